/*
 * embed — a C program embedding Python, under pyref-run: imports the traced leakcheck_ext
 * (found through PYTHONPATH), calls remember() argv[1] times, prints a line, finalizes and
 * exits with status 5.
 */
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    char code[256];
    snprintf(code, sizeof code,
             "import leakcheck_ext\nfor _ in range(%d): leakcheck_ext.remember(object())\n",
             argc > 1 ? atoi(argv[1]) : 1);
    Py_Initialize();
    if (PyRun_SimpleString(code) != 0)
        return 1;
    printf("embedded: done\n");
    fflush(stdout);
    if (Py_FinalizeEx() < 0)
        return 120;
    return 5;
}
