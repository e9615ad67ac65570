"""refdata.py — what CPython's reference data and pyref's corrections say about each C-API name.

The model (`Api`, `Param`) and its two inputs: CPython's Doc/data/refcounts.dat (data/: the
3.11 release's and main's) and the curated corrections in capi_overrides.txt (its header
says the directives). `load()` gives {name: Api} before any decision how to wrap a name.
Standard library only.
"""
import collections
import os
import re

# The reference-data files, by tag: "3.11" and "main" (the main snapshot is 3.14).
DATA_FILES = (("3.11", "refcounts-3.11.dat"), ("main", "refcounts-main.dat"))

# The oldest version the wrappers support: a name known since then needs no version test.
OLDEST = (3, 10)

VERSION = re.compile(r"^3\.(\d+)$")
OBJECT_RETURN = re.compile(
    r"^(PyObject|PyVarObject|PyTypeObject|PyCodeObject|PyFrameObject|TYPE) \*$")


class GenError(Exception):
    """A problem in the inputs: reported as one line, exit status 1."""


Param = collections.namedtuple("Param", "type name effect comment")


class Api:
    """Everything known about one C-API name, before the decision how to wrap it."""

    def __init__(self, name):
        self.name = name
        self.versions = []        # reference-data files that list it: "3.11", "main"
        self.ret_type = ""
        self.returns = "none"     # new | borrowed | none | null
        self.params = []          # [Param]
        self.container = None     # (param, note) for borrowed results / stolen items
        self.index = None         # param holding the index in the container
        self.steals = []          # [(param, always, note)]
        self.outs = []            # [(param, kind, when, container, note)]
        self.since = None         # "3.11" ...
        self.until = None
        self.limited = True
        self.limited_since = None # in the limited API only from this version
        self.via = None           # (target, note)
        self.skip = None          # reason
        self.rule = None          # the caller's rule, when the generic one would mislead
        self.notes = []           # reasons of the overrides that touched it

    def param(self, name, line=None):
        for p in self.params:
            if p.name == name:
                return p
        raise GenError("%s: %s has no parameter %r (has %s)" % (
            line or "overrides", self.name, name, ", ".join(p.name for p in self.params)))


def vhex(v):
    """'3.12' -> '0x030C0000' (PY_VERSION_HEX of the release)."""
    m = VERSION.match(v)
    return "0x03%02X0000" % int(m.group(1))


def vtuple(v):
    """'3.12' -> (3, 12)."""
    return (3, int(VERSION.match(v).group(1)))


def norm_type(t):
    """'PyObject*' -> 'PyObject *', 'const char *' stays, 'PyObject*const*' -> 'PyObject *const *'."""
    t = re.sub(r"\s*\*\s*", " *", t.strip())
    t = re.sub(r"\*\s*const\b", "*const", t)
    t = re.sub(r"\s+", " ", t).replace("* *", "**").strip()
    return t


def parse_refcounts(path):
    """{name: (ret_type, ret_effect, [Param])} from one refcounts.dat, in file order."""
    funcs = collections.OrderedDict()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in line.split(":", 4)]
            if len(parts) < 4:
                raise GenError("%s:%d: expected name:type:param:refcount:comment" % (path, lineno))
            parts += [""] * (5 - len(parts))
            name, typ, pname, effect, comment = parts
            if name not in funcs:
                funcs[name] = [norm_type(typ), effect, []]
                continue
            if not typ and " " in pname and not pname.startswith("void ("):
                typ, pname = pname.rsplit(" ", 1)   # 3.11 data: "Py_complex v" in the name slot
            pname = pname.lstrip("*")
            if any(p.name == pname for p in funcs[name][2]):
                continue                            # repeated rows (PyErr_NormalizeException)
            funcs[name][2].append(Param(norm_type(typ), pname, effect, comment))
    return funcs


def parse_prototype(text, line):
    """'int(PyObject *m, const char *name)' -> (ret_type, [Param])."""
    m = re.match(r"^\s*([\w\s\*]+?)\s*\((.*)\)\s*$", text)
    if not m:
        raise GenError("%s: bad prototype %r" % (line, text))
    params = []
    body = m.group(2).strip()
    if body and body != "void":
        for decl in body.split(","):
            if decl.strip() == "...":
                params.append(Param("", "...", "", ""))
                continue
            dm = re.match(r"^\s*(.*?)(\w+)\s*$", decl)
            if not dm:
                raise GenError("%s: bad parameter %r" % (line, decl))
            params.append(Param(norm_type(dm.group(1)), dm.group(2), "", ""))
    return norm_type(m.group(1)), params


def load(data_dir, overrides_path):
    """{name: Api} from the reference data in `data_dir` (DATA_FILES), corrected by the
    overrides file. Raises GenError (or OSError) on bad input."""
    apis = {}
    for tag, fname in DATA_FILES:
        path = os.path.join(data_dir, fname)
        for name, (ret_type, effect, params) in parse_refcounts(path).items():
            api = apis.setdefault(name, Api(name))
            api.versions.append(tag)
            if tag == "main" or not api.params:   # main's entry wins: it fixes 3.11 typos
                api.ret_type, api.params = ret_type, params
                api.returns = {"+1": "new", "0": "borrowed", "null": "null"}.get(effect, "none")
                if api.returns == "borrowed" and not OBJECT_RETURN.match(ret_type):
                    api.returns = "none"
    for api in apis.values():   # refcounts.dat's -1 entries are steals until overridden
        api.steals = [(p.name, True, "refcounts.dat: -1") for p in api.params if p.effect == "-1"]
    apply_overrides(apis, overrides_path)
    return apis


def apply_overrides(apis, path):
    """Applies each directive of the overrides file to `apis` (in place)."""
    with open(path, encoding="utf-8") as f:
        lines = [(n, l.rstrip("\n")) for n, l in enumerate(f, 1)]
    # "add" first: later directives may refer to the added names.
    ordered = sorted(lines, key=lambda nl: 0 if nl[1].startswith("add ") else 1)
    for lineno, line in ordered:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = "%s:%d" % (os.path.basename(path), lineno)
        if " : " not in line:
            raise GenError("%s: every directive needs ' : reason'" % where)
        body, reason = line.split(" : ", 1)
        words = body.split()
        directive, args = words[0], words[1:]
        if directive == "nonlimited":
            for name in args:
                api_of(apis, name, where).limited = False
            continue
        if not args:
            raise GenError("%s: %s needs a name" % (where, directive))
        name, rest = args[0], args[1:]
        if directive == "add":
            if name in apis:
                raise GenError("%s: %s is already in the reference data" % (where, name))
            api = apis[name] = Api(name)
            api.ret_type, api.params = parse_prototype(" ".join(rest), where)
            api.returns = "new" if OBJECT_RETURN.match(api.ret_type) else "none"
            api.notes.append(reason)
            continue
        api = api_of(apis, name, where)
        if directive != "skip":
            api.notes.append(reason)
        if directive == "steal":
            if len(rest) != 2 or rest[1] not in ("always", "success"):
                raise GenError("%s: steal NAME ARG always|success" % where)
            api.param(rest[0], where)
            api.steals = [s for s in api.steals if s[0] != rest[0]]
            api.steals.append((rest[0], rest[1] == "always", reason))
        elif directive == "notsteal":
            api.param(rest[0], where)
            api.steals = [s for s in api.steals if s[0] != rest[0]]
        elif directive == "container":
            api.container = (api.param(rest[0], where).name, reason)
            for opt in rest[1:]:
                key, _, value = opt.partition("=")
                if key != "index":
                    raise GenError("%s: unknown option %r" % (where, opt))
                api.index = api.param(value, where).name
        elif directive == "returns":
            if rest not in (["new"], ["borrowed"], ["none"], ["null"]):
                raise GenError("%s: returns NAME new|borrowed|none|null" % where)
            api.returns = rest[0]
        elif directive == "out":
            if len(rest) < 3 or rest[1] not in ("new", "borrowed") or \
                    rest[2] not in ("nonzero", "positive", "nonneg", "always"):
                raise GenError("%s: out NAME ARG new|borrowed WHEN [container=ARG]" % where)
            api.param(rest[0], where)
            container = None
            for opt in rest[3:]:
                key, _, value = opt.partition("=")
                if key != "container":
                    raise GenError("%s: unknown option %r" % (where, opt))
                container = api.param(value, where).name
            api.outs.append((rest[0], rest[1], rest[2], container, reason))
        elif directive in ("since", "until", "limited"):
            if len(rest) != 1 or not VERSION.match(rest[0]):
                raise GenError("%s: %s NAME 3.X" % (where, directive))
            setattr(api, "limited_since" if directive == "limited" else directive, rest[0])
        elif directive == "ptype":
            if len(rest) < 2:
                raise GenError("%s: ptype NAME ARG TYPE" % where)
            old = api.param(rest[0], where)
            api.params = [p._replace(type=norm_type(" ".join(rest[1:]))) if p is old else p
                          for p in api.params]
        elif directive == "via":
            api.via = (rest[0], reason)
        elif directive == "skip":
            api.skip = reason
        elif directive == "rule":
            if not rest:
                raise GenError("%s: rule NAME TEXT" % where)
            api.rule = " ".join(rest)
        else:
            raise GenError("%s: unknown directive %r" % (where, directive))


def api_of(apis, name, where):
    if name not in apis:
        raise GenError("%s: %s is not in the reference data (use 'add')" % (where, name))
    return apis[name]
