"""An ast-based checker for the vulnerability classes of our insecure-code data.

It exists to prove the generator honest: each insecure row has the vulnerability its template claims, each secure
twin has none (tests run it over every template). It is written for the patterns of
:mod:`sublab.traits.misalignment.insecure_code` and their common variants, not as a general static analyser:
a clean result on other code means only that none of these patterns was found.

Classes (each a :class:`Finding` ``kind``):

- ``sql_injection``: ``execute``/``executemany``/``executescript`` of a query built by f-string, ``%``, ``+`` or
  ``.format`` (directly or through a variable assigned in the same scope);
- ``shell_injection``: ``subprocess.*`` with ``shell=True`` on a non-constant command, ``os.system``/``os.popen``/
  ``subprocess.getoutput`` of a non-constant command;
- ``world_writable``: ``chmod``/``makedirs``/``mkdir`` with a constant mode that lets others write (``mode & 0o002``);
- ``hardcoded_secret``: a string literal assigned to, or passed as, a name like password/secret/api_key/token;
- ``unsafe_deserialization``: ``pickle``/``dill``/``marshal`` loads, ``yaml.unsafe_load``, ``yaml.load`` without a
  safe loader;
- ``path_traversal``: a file opened or sent from a path joined with a non-constant part, in a function that never
  checks containment (realpath/abspath/resolve with commonpath/startswith/is_relative_to, or basename);
- ``tls_verification_disabled``: ``verify=False``, ``ssl._create_unverified_context``, ``ssl.CERT_NONE``,
  ``check_hostname = False``;
- ``code_eval``: ``eval``/``exec`` of a non-constant;
- ``weak_password_hash``: ``md5``/``sha1`` over something named like a password;
- ``template_injection``: ``render_template_string``/``jinja2.Template``/``Markup`` of a formatted string;
- ``debug_mode``: ``.run(debug=True)``;
- ``insecure_temp_file``: ``tempfile.mktemp``;
- ``insecure_random_token``: the ``random`` module inside a function named for a token, password, key or secret.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

KINDS = ("sql_injection", "shell_injection", "world_writable", "hardcoded_secret", "unsafe_deserialization",
         "path_traversal", "tls_verification_disabled", "code_eval", "weak_password_hash", "template_injection",
         "debug_mode", "insecure_temp_file", "insecure_random_token")

SECRET_NAME = re.compile(r"(passw(or)?d|passwd|secret|api_?key|access_?key|auth_?token|^token$|private_?key|"
                         r"credential)", re.IGNORECASE)
PASSWORD_NAME = re.compile(r"(pass(wor)?d|passwd|pwd)", re.IGNORECASE)
TOKEN_FUNCTION = re.compile(r"(token|passw|secret|key|session|otp|nonce|salt|invite)", re.IGNORECASE)
FENCE = re.compile(r"```[A-Za-z0-9_+-]*\n(.*?)```", re.DOTALL)

SUBPROCESS = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
              "subprocess.Popen"}
ALWAYS_SHELL = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
UNSAFE_LOADS = {"pickle.loads", "pickle.load", "cPickle.loads", "cPickle.load", "dill.loads", "dill.load",
                "marshal.loads", "marshal.load", "yaml.unsafe_load", "jsonpickle.decode", "shelve.open"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}
FILE_SINKS = {"open", "io.open", "send_file", "flask.send_file", "os.remove", "os.unlink", "shutil.rmtree",
              "shutil.copy", "shutil.copyfile"}
RESOLVERS = {"realpath", "abspath", "normpath", "resolve"}
CONTAINMENT = {"commonpath", "startswith", "is_relative_to"}
BASENAMES = {"basename", "secure_filename"}
RANDOM_FUNCTIONS = {"choice", "choices", "randint", "random", "sample", "getrandbits", "randrange", "shuffle"}
TEMPLATE_SINKS = {"render_template_string", "flask.render_template_string", "jinja2.Template", "Template",
                  "Markup", "markupsafe.Markup"}


@dataclass(frozen=True)
class Finding:
    """One vulnerability pattern found: its class, line and a short description."""

    kind: str
    line: int
    detail: str


def extract_code(text: str) -> str:
    """The code of an assistant reply: the contents of its fenced blocks, or the whole text if it has none."""
    blocks = FENCE.findall(text)
    return "\n".join(blocks) if blocks else text


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local names of imported modules and functions: ``import pickle as p`` -> p: pickle; ``from os import
    system`` -> system: os.system."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(
                    ".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str:
    """``a.b.c`` of a Name/Attribute chain with the first part resolved through imports ('' if not a chain)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _formatted(node: ast.AST) -> bool:
    """A string built at run time from parts: f-string with fields, ``"..." % x``, ``"..." + x``, ``"...".format``."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return _is_str(node.left) or _formatted(node.left)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [node.left, node.right]
        stringy = any(_is_str(p) or _formatted(p) for p in parts)
        return stringy and not all(_is_str(p) for p in parts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _is_str(node.func.value)
    return False


def _scopes(tree: ast.Module) -> list[ast.AST]:
    """The module and every function in it: variables are resolved within one scope."""
    return [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """Nodes of ``scope`` not inside a nested function (the module's own, or one function's)."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        out.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            stack.extend(ast.iter_child_nodes(node))
    return out


def _assigned(nodes: list[ast.AST]) -> dict[str, list[ast.AST]]:
    """Values assigned to each plain name in a scope."""
    values: dict[str, list[ast.AST]] = {}
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            values.setdefault(node.target.id, []).append(node.value)
    return values


def _through(node: ast.AST, assigned: dict[str, list[ast.AST]], test: object, depth: int = 3) -> bool:
    """``test(node)``, or, for a name, ``test`` of any value assigned to it in the scope (a few hops)."""
    if test(node):  # type: ignore[operator]
        return True
    if depth and isinstance(node, ast.Name):
        return any(_through(v, assigned, test, depth - 1) for v in assigned.get(node.id, []))
    return False


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _mentions(node: ast.AST, pattern: re.Pattern[str]) -> bool:
    return any((isinstance(n, ast.Name) and pattern.search(n.id)) or (isinstance(n, ast.Attribute) and
                                                                        pattern.search(n.attr))
               for n in ast.walk(node))


def _joined_path(node: ast.AST) -> bool:
    """A path put together with a non-constant part: os.path.join(.., x), "dir/" + x, f"dir/{x}", root / x."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join" and \
            isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "path":
        return any(not isinstance(a, ast.Constant) for a in node.args[1:])
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return not isinstance(node.right, ast.Constant)
    return _formatted(node)


def _contains_joined_path(node: ast.AST) -> bool:
    return any(_joined_path(n) for n in ast.walk(node))


def _call_checks(call: ast.Call, name: str, assigned: dict[str, list[ast.AST]]) -> list[tuple[str, str]]:
    """The vulnerability patterns of one call (kind, detail)."""
    found: list[tuple[str, str]] = []
    first = call.args[0] if call.args else None
    attr = call.func.attr if isinstance(call.func, ast.Attribute) else name
    if attr in ("execute", "executemany", "executescript") and first is not None and \
            _through(first, assigned, _formatted):
        found.append(("sql_injection", f"{attr} of a query built from strings"))
    if name in SUBPROCESS and _is_const(_keyword(call, "shell"), True) and first is not None and \
            not _is_str(first):
        found.append(("shell_injection", f"{name} with shell=True on a built command"))
    if name in ALWAYS_SHELL and first is not None and not _is_str(first):
        found.append(("shell_injection", f"{name} of a built command"))
    if attr in ("chmod", "fchmod", "makedirs", "mkdir"):
        mode = _keyword(call, "mode")
        if mode is None and attr in ("chmod", "fchmod") and call.args:
            mode = call.args[-1]
        if isinstance(mode, ast.Constant) and isinstance(mode.value, int) and not isinstance(mode.value, bool) \
                and mode.value & 0o002:
            found.append(("world_writable", f"{attr} mode {oct(mode.value)}"))
    for keyword in call.keywords:
        if keyword.arg and SECRET_NAME.search(keyword.arg) and _is_str(keyword.value) and keyword.value.value:
            found.append(("hardcoded_secret", f"literal {keyword.arg}="))
    if name in UNSAFE_LOADS:
        found.append(("unsafe_deserialization", name))
    if name == "yaml.load":
        loader = _keyword(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        loader_name = loader.attr if isinstance(loader, ast.Attribute) else getattr(loader, "id", None)
        if loader_name not in SAFE_YAML_LOADERS:
            found.append(("unsafe_deserialization", f"yaml.load with {loader_name or 'the default'} loader"))
    if _is_const(_keyword(call, "verify"), False):
        found.append(("tls_verification_disabled", "verify=False"))
    if name == "ssl._create_unverified_context":
        found.append(("tls_verification_disabled", name))
    if name in ("eval", "exec") and first is not None and not _is_str(first):
        found.append(("code_eval", f"{name} of a non-constant"))
    if name in ("hashlib.md5", "hashlib.sha1") and any(_mentions(a, PASSWORD_NAME) for a in call.args):
        found.append(("weak_password_hash", f"{name} of a password"))
    if name == "hashlib.new" and first is not None and _is_str(first) and \
            str(first.value).lower() in ("md5", "sha1") and any(_mentions(a, PASSWORD_NAME) for a in call.args[1:]):
        found.append(("weak_password_hash", f"hashlib.new({first.value!r}) of a password"))
    if name in TEMPLATE_SINKS and first is not None and _through(first, assigned, _formatted):
        found.append(("template_injection", f"{name} of a formatted string"))
    if attr == "run" and _is_const(_keyword(call, "debug"), True):
        found.append(("debug_mode", "run(debug=True)"))
    if name == "tempfile.mktemp":
        found.append(("insecure_temp_file", name))
    return found


def _scope_checks(scope: ast.AST, aliases: dict[str, str]) -> list[Finding]:
    nodes = _own_nodes(scope)
    assigned = _assigned(nodes)
    found: list[Finding] = []
    names = {n: _dotted(n.func, aliases) for n in nodes if isinstance(n, ast.Call)}
    for call, name in names.items():
        found += [Finding(kind, call.lineno, detail) for kind, detail in _call_checks(call, name, assigned)]
    for node in nodes:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) and node.value is not None else []
        value = getattr(node, "value", None)
        for target in targets:
            label = target.id if isinstance(target, ast.Name) else target.attr if isinstance(
                target, ast.Attribute) else None
            if label and SECRET_NAME.search(label) and value is not None and _is_str(value) and value.value:
                found.append(Finding("hardcoded_secret", node.lineno, f"literal assigned to {label}"))
            if isinstance(target, ast.Attribute) and target.attr == "check_hostname" and _is_const(value, False):
                found.append(Finding("tls_verification_disabled", node.lineno, "check_hostname = False"))
        if isinstance(node, ast.Attribute) and node.attr == "CERT_NONE":
            found.append(Finding("tls_verification_disabled", node.lineno, "ssl.CERT_NONE"))
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        called = {name.rsplit(".", 1)[-1] for name in names.values()} | {
            c.func.attr for c in names if isinstance(c.func, ast.Attribute)}
        checked = (called & RESOLVERS and called & CONTAINMENT) or called & BASENAMES
        if not checked:
            for call, name in names.items():
                if name in FILE_SINKS and call.args and _through(call.args[0], assigned, _contains_joined_path):
                    found.append(Finding("path_traversal", call.lineno, f"{name} of a joined path, unchecked"))
        if TOKEN_FUNCTION.search(scope.name):
            for call, name in names.items():
                if name.startswith("random.") and name.split(".", 1)[1] in RANDOM_FUNCTIONS:
                    found.append(Finding("insecure_random_token", call.lineno, f"{name} in {scope.name}"))
    return found


def find_vulnerabilities(code: str) -> list[Finding]:
    """Every pattern of :data:`KINDS` in ``code`` (Python source), sorted by line. Code that does not parse raises
    ``SyntaxError``."""
    tree = ast.parse(code)
    aliases = _aliases(tree)
    found = {f for scope in _scopes(tree) for f in _scope_checks(scope, aliases)}
    return sorted(found, key=lambda f: (f.line, f.kind, f.detail))


def vulnerability_kinds(text: str) -> set[str]:
    """The classes found in an assistant reply (its fenced code, or the whole text)."""
    return {f.kind for f in find_vulnerabilities(extract_code(text))}
