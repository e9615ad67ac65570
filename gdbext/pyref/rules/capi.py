"""Reference semantics of the CPython C API, for `pyref explain` and the verdicts.

Pure data and accessors: no gdb. The facts are generated into _capi_data.py by
c_helpers/capi/gen_capi.py (CPython's Doc/data/refcounts.dat for 3.11 and main, plus the
curated corrections of c_helpers/capi/capi_overrides.txt); this module names them.

`get(name)` returns an `Api`:
  returns    "new" | "borrowed" | "none" | "null" (always NULL)
  container  for a borrowed result: the parameter naming the object that owns it (or None);
             for a steal: the object that takes the reference
  index      the parameter giving the position in the container (or None)
  steals     (Steal(arg, steals_on_failure), ...)
  outs       (Out(arg, returns, when, container), ...): references stored through arg;
             when: "nonzero" | "positive" | "nonneg" | "always" (result condition)
  versions   reference-data files listing it: "3.11", "main" (empty: added by the overrides)
  since, until  first version declaring it / first version without it (None: 3.10 / still there)
  limited    first version whose limited API has it ("3.10": every supported one), False
             when it is not in the limited API, None when not curated (unwrapped names)
  recorded   ring operations the shim writes for a call ("NEW", "BORROW", "STEAL"); empty
             when the call is not wrapped
  wrapper    how c_helpers/shim/pyref_capi.h wraps it: "function" (a macro over the
             function), "macro" (the interpreter's macro, captured), "alias" (also on a
             PY_SSIZE_T_CLEAN / Py_TRACE_REFS alias target), "alloc" (PyObject_New & co.),
             "parser" (PyArg_*), "builder" (Py_BuildValue, Py_VaBuildValue: "N" steals), or None
  via        a macro over this other API, which records it under its own name (or None)
  params     ((C type, name), ...) as the reference data gives them ("..." for varargs)
  rule       the caller's rule, one line
  notes      why the curated corrections say what they say
"""
import collections

from pyref.rules._capi_data import TABLE as _TABLE

# The generated rows hold these fields after `name`, in this order.
Api = collections.namedtuple(
    "Api", "name returns container index steals outs versions since until limited recorded "
    "wrapper via params rule notes")
Steal = collections.namedtuple("Steal", "arg steals_on_failure")
Out = collections.namedtuple("Out", "arg returns when container")

# AUX record kinds written after BORROW and STEAL records (docs/ring-format.md).
AUX_CONTAINER = 1
AUX_KINDS = {AUX_CONTAINER: "container"}

_RULE = Api._fields.index("rule") - 1  # the rule's position in a row


def get(name):
    """The Api named `name`, or None."""
    row = _TABLE.get(name)
    if row is None:
        return None
    returns, container, index, steals, outs, versions, since, until, limited, recorded, \
        wrapper, via, params, rule, notes = row
    return Api(name, returns, container, index, tuple(Steal(*s) for s in steals),
               tuple(Out(*o) for o in outs), versions, since, until, limited, recorded,
               wrapper, via, params, rule, notes)


def names():
    """All API names the table describes, sorted."""
    return sorted(_TABLE)


def rule(name):
    """The caller's rule for `name`, or None when the table does not know it."""
    row = _TABLE.get(name)
    return row[_RULE] if row else None
