"""The generated reference: settings, system checks, error codes, signals, HTTP API.

Everything here is read from the code, so the reference cannot drift from it:

- settings from ``rotating_tokens/conf.py``: the names and defaults of ``DEFAULTS``,
  the type and meaning of each typed property of ``Settings`` (its return annotation
  and docstring), and the checks whose message or hint names the setting;
- system checks from the source of the package, parsed with ``ast``: every
  ``Error``/``Warning``/``Info`` call with an ``id``, its message and hint (f-string
  parts shown as ``{placeholders}``), and whether it runs only with ``--deploy``;
- error codes from ``rotating_tokens/exceptions.py`` (``code``/``default_code`` with the
  status and message of each class), from every literal ``code=…`` or ``"code": …`` in
  the package, and from the OpenAPI schema, which lists per endpoint the codes of each
  status;
- signals from ``rotating_tokens/signals.py`` (the comment above each ``Signal()``);
- the HTTP API from the OpenAPI schema of ``rotating_tokens/openapi.py``.

The collectors are plain functions that ``tests/test_docs.py`` calls too; the Sphinx
directives render what they return as MyST Markdown.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rotating_tokens"
LEVELS = {"Error": "Error", "Warning": "Warning", "Info": "Info", "Critical": "Critical"}


# -- settings ---------------------------------------------------------------------------


@dataclass
class SettingDoc:
    name: str
    type: str
    default: str
    doc: str
    checks: list[str] = field(default_factory=list)


def _default_repr(value: Any) -> str:
    if isinstance(value, timedelta):
        for unit, seconds in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if value.total_seconds() % seconds == 0 and value.total_seconds() >= seconds:
                return f"timedelta({unit}={int(value.total_seconds() // seconds)})"
        return f"timedelta(seconds={value.total_seconds():g})"
    return repr(value)


def _clean_doc(doc: str | None) -> str:
    if not doc:
        return ""
    lines = doc.strip().splitlines()
    return " ".join(line.strip() for line in lines)


def collect_settings() -> list[SettingDoc]:
    from rotating_tokens import conf

    checks = collect_checks()
    result = []
    for name, default in conf.DEFAULTS.items():
        prop = getattr(conf.Settings, name, None)
        getter = getattr(prop, "fget", None)
        doc = _clean_doc(getattr(getter, "__doc__", None))
        annotation = getattr(getter, "__annotations__", {}).get("return", "")
        mentioned = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])")
        ids = [c.id for c in checks if mentioned.search(f"{c.msg} {c.hint}")]
        ids = sorted(set(ids) | set(conf.SETTING_CHECKS.get(name, ())))
        result.append(SettingDoc(name, str(annotation), _default_repr(default), doc, ids))
    return result


# -- system checks ----------------------------------------------------------------------


@dataclass
class CheckDoc:
    id: str
    level: str
    msg: str
    hint: str
    deploy: bool
    where: str


def _text(node: ast.AST | None) -> str:
    """A message as a reader should see it: literal parts as they are, the computed ones
    as ``{placeholder}``."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + _placeholder(value.value) + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("_", "gettext"):
        return _text(node.args[0]) if node.args else ""
    return "{" + _placeholder(node) + "}"


def _placeholder(node: ast.AST) -> str:
    source = ast.unparse(node)
    # "app_settings.REVOCATION_PUSH" reads better as the setting's name.
    source = re.sub(r"\bapp_settings\.", "", source)
    return source if len(source) <= 40 else "…"


def _check_calls(tree: ast.Module) -> dict[str, list[tuple[ast.Call, str]]]:
    """Per top-level function, the check calls it makes (with their level)."""
    calls: dict[str, list[tuple[ast.Call, str]]] = {}
    for func in tree.body:
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in LEVELS and any(k.arg == "id" for k in node.keywords):
                calls.setdefault(func.name, []).append((node, LEVELS[name]))
    return calls


def _deploy_only(tree: ast.Module) -> set[str]:
    """Functions reached only from checks registered with ``deploy=True``."""
    functions = {
        f.name: f for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    callees = {
        name: {
            n.func.id
            for n in ast.walk(f)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions
        }
        for name, f in functions.items()
    }
    roots: dict[str, bool] = {}
    for name, f in functions.items():
        for deco in f.decorator_list:
            if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "register":
                roots[name] = any(
                    k.arg == "deploy" and getattr(k.value, "value", False) for k in deco.keywords
                )

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(callees.get(current, ()))
        return seen

    always = set().union(*(reach(r) for r, deploy in roots.items() if not deploy))
    deploy = set().union(*(reach(r) for r, deploy in roots.items() if deploy))
    return deploy - always


@cache
def _checks() -> tuple[CheckDoc, ...]:
    found: dict[str, CheckDoc] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        source = path.read_text()
        if "id=" not in source:
            continue
        tree = ast.parse(source)
        deploy_only = _deploy_only(tree)
        for function, calls in _check_calls(tree).items():
            for call, level in calls:
                id_node = next(k.value for k in call.keywords if k.arg == "id")
                if not isinstance(id_node, ast.Constant):
                    continue
                hint = next((k.value for k in call.keywords if k.arg == "hint"), None)
                msg = call.args[0] if call.args else None
                msg = msg or next((k.value for k in call.keywords if k.arg == "msg"), None)
                check_id = id_node.value
                doc = CheckDoc(
                    check_id,
                    level,
                    _text(msg),
                    _text(hint),
                    function in deploy_only,
                    f"{path.relative_to(ROOT)}:{function}",
                )
                if check_id in found:
                    # One id, several messages (variants of one problem): keep them all.
                    earlier = found[check_id]
                    if doc.msg not in earlier.msg:
                        earlier.msg = f"{earlier.msg} / {doc.msg}"
                    if doc.hint and doc.hint not in earlier.hint:
                        earlier.hint = f"{earlier.hint} / {doc.hint}" if earlier.hint else doc.hint
                else:
                    found[check_id] = doc
    return tuple(sorted(found.values(), key=lambda c: (c.id[16], int(c.id[17:]))))


def collect_checks() -> list[CheckDoc]:
    return list(_checks())


def emitted_check_ids() -> set[str]:
    """Every check id written in the package's source, however it is used: what the
    reference must cover."""
    ids = set()
    for path in PACKAGE.rglob("*.py"):
        ids.update(re.findall(r"id=\"(rotating_tokens\.[EWIC]\d{3})\"", path.read_text()))
    return ids


# -- error codes ------------------------------------------------------------------------


@dataclass
class CodeDoc:
    code: str
    meaning: str = ""
    statuses: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)


def _literal_codes() -> dict[str, tuple[str, str]]:
    """``code=…`` keywords and ``"code": …`` entries with a literal value, with the
    sentence next to them where there is one, and where they are."""
    codes: dict[str, tuple[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts or path.name == "openapi.py":
            continue
        tree = ast.parse(path.read_text())
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                        detail = next(
                            (_text(k.value) for k in node.keywords if k.arg == "detail"),
                            _text(node.args[0]) if node.args else "",
                        )
                        codes.setdefault(keyword.value.value, (detail, where))
            elif isinstance(node, ast.Dict):
                keys = [getattr(k, "value", None) for k in node.keys]
                if "code" in keys:
                    value = node.values[keys.index("code")]
                    if isinstance(value, ast.Constant) and isinstance(value.value, str):
                        detail = (
                            _text(node.values[keys.index("detail")]) if "detail" in keys else ""
                        )
                        codes.setdefault(value.value, (detail, where))
    return codes


def _exception_codes() -> dict[str, tuple[str, str, int | None]]:
    """``code`` → (message, class, HTTP status) of the classes of exceptions.py."""
    from rest_framework.exceptions import APIException

    from rotating_tokens import exceptions

    result = {}
    for name in dir(exceptions):
        cls = getattr(exceptions, name)
        if not isinstance(cls, type) or cls.__module__ != exceptions.__name__:
            continue
        code = cls.__dict__.get("code") or cls.__dict__.get("default_code")
        if not code:
            continue
        message = cls.__dict__.get("message") or cls.__dict__.get("default_detail")
        status = cls.status_code if issubclass(cls, APIException) else None
        result[code] = (str(message or ""), f"rotating_tokens.exceptions.{name}", status)
    return result


def collect_codes() -> list[CodeDoc]:
    docs: dict[str, CodeDoc] = {}

    def doc(code: str) -> CodeDoc:
        return docs.setdefault(code, CodeDoc(code))

    for code, (message, where, status) in _exception_codes().items():
        entry = doc(code)
        entry.meaning = entry.meaning or message
        entry.sources.append(where)
        if status:
            entry.statuses.setdefault(str(status), [])
    for code, (detail, where) in _literal_codes().items():
        entry = doc(code)
        entry.meaning = entry.meaning or detail
        entry.sources.append(where)
    for path, methods in openapi_schema()["paths"].items():
        for method, operation in methods.items():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                enum = schema.get("properties", {}).get("code", {}).get("enum", [])
                for code in enum:
                    entry = doc(code)
                    entry.statuses.setdefault(status, []).append(f"{method.upper()} {path}")
                    if not entry.meaning:
                        entry.meaning = response.get("description", "")
    return sorted(docs.values(), key=lambda d: d.code)


# -- signals ----------------------------------------------------------------------------


@dataclass
class SignalDoc:
    name: str
    when: str
    arguments: str


def collect_signals() -> list[SignalDoc]:
    path = PACKAGE / "signals.py"
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    result = []
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "Signal"
        ):
            continue
        comment: list[str] = []
        index = node.lineno - 2
        while index >= 0 and lines[index].startswith("#"):
            comment.insert(0, lines[index].lstrip("# ").rstrip())
            index -= 1
        text = " ".join(comment)
        when, _, arguments = text.partition("Arguments:")
        result.append(SignalDoc(node.targets[0].id, when.strip(), arguments.strip()))  # type: ignore[attr-defined]
    return result


# -- HTTP API ---------------------------------------------------------------------------


@cache
def openapi_schema() -> dict[str, Any]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator(urlconf="rotating_tokens.urls").get_schema(request=None, public=True)
    return json.loads(json.dumps(schema, default=str))


SAMPLE_ID = "6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f"
SAMPLES = {
    "access": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.…",
    "refresh": "rtok_AbCdEfGhIjKlMnOp…",
    "username": "demo",
    "password": "demo-password",
    "token_type": "Bearer",
    "name": "Work laptop",
    "ip_address": "203.0.113.7",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) …",
    "device": "Chrome 131 on Linux",
    "dpop_jkt": None,
    "detail": "A sentence for humans.",
    "kty": "EC",
    "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
    "alg": "ES256",
    "use": "sig",
    "crv": "P-256",
}


def sample(schema: dict[str, Any], name: str = "", depth: int = 0) -> Any:
    """An example value for a JSON schema (the schema's own example first)."""
    schema = _resolve(schema)
    if "example" in schema:
        return schema["example"]
    if name in SAMPLES:
        return SAMPLES[name]
    if "enum" in schema:
        return schema["enum"][0]
    if "allOf" in schema:
        return sample(schema["allOf"][0], name, depth)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {
            key: sample(value, key, depth + 1)
            for key, value in schema.get("properties", {}).items()
            if not value.get("writeOnly") or depth == 0
        }
    if kind == "array":
        return [sample(schema.get("items", {}), name, depth + 1)]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return 0
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2026-12-03T08:00:00Z"
    if fmt == "uuid":
        return SAMPLE_ID
    return "string"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    target: Any = openapi_schema()
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


@dataclass
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    description: str
    request_example: Any
    request_type: str
    parameters: list[dict[str, Any]]
    responses: list[tuple[str, str, list[str], Any]]
    security: bool


def collect_operations(prefix: str = "/api/auth/") -> list[Operation]:
    schema = openapi_schema()
    result = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {})
            request_type = next(iter(body), "")
            request_example = sample(body[request_type]["schema"]) if request_type else None
            responses = []
            for status, response in sorted(op.get("responses", {}).items()):
                content = response.get("content", {}).get("application/json", {})
                response_schema = content.get("schema")
                codes = (
                    _resolve(response_schema or {})
                    .get("properties", {})
                    .get("code", {})
                    .get("enum", [])
                )
                example = None
                if response_schema and status.startswith("2"):
                    example = sample(response_schema)
                elif codes:
                    example = {"detail": SAMPLES["detail"], "code": codes[0]}
                responses.append((status, response.get("description", ""), codes, example))
            result.append(
                Operation(
                    method.upper(),
                    prefix + path.lstrip("/"),
                    op.get("operationId", ""),
                    op.get("summary", ""),
                    op.get("description", ""),
                    request_example,
                    request_type,
                    op.get("parameters", []),
                    responses,
                    bool(op.get("security")) and {} not in op.get("security", []),
                )
            )
    return result


# -- rendering --------------------------------------------------------------------------


def _md_escape_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_settings() -> str:
    settings = collect_settings()
    out = ["| setting | type | default |", "|---|---|---|"]
    out += [
        f"| {{setting}}`{s.name}` | {_md_escape_cell(f'`{s.type}`')} "
        f"| {_md_escape_cell(f'`{s.default}`')} |"
        for s in settings
    ]
    out.append("")
    for s in settings:
        out.append(f"```{{setting}} {s.name}\n```\n")
        out.append(f"**Type:** `{s.type}` · **Default:** `{s.default}`\n")
        out.append(f"{s.doc}\n")
        if s.checks:
            out.append("**Checked by:** " + ", ".join(f"{{check}}`{c}`" for c in s.checks) + "\n")
    return "\n".join(out)


def render_checks() -> str:
    checks = collect_checks()
    out = ["| id | level | runs |", "|---|---|---|"]
    out += [
        f"| {{check}}`{c.id}` | {c.level} | {'`check --deploy`' if c.deploy else '`check`'} |"
        for c in checks
    ]
    out.append("")
    for c in checks:
        out.append(f"```{{check}} {c.id}\n```\n")
        deploy = " · only with `manage.py check --deploy`" if c.deploy else ""
        out.append(f"**{c.level}**{deploy} · `{c.where}`\n")
        out.append(f"Message\n: {_inline(c.msg)}\n")
        if c.hint:
            out.append(f"Hint\n: {_inline(c.hint)}\n")
    return "\n".join(out)


def _inline(text: str) -> str:
    """A message shown literally (placeholders and all), safe inside Markdown."""
    text = text.replace("`", "'")
    return f"`` {text} ``"


def render_codes() -> str:
    out = []
    for c in collect_codes():
        out.append(f"```{{errcode}} {c.code}\n```\n")
        statuses = ", ".join(sorted(c.statuses)) or "—"
        out.append(f"**HTTP status:** {statuses}\n")
        if c.meaning:
            out.append(f"{c.meaning}\n")
        for status in sorted(c.statuses):
            where = c.statuses[status]
            if where:
                unique = sorted(set(where))
                out.append(f"- {status} from " + ", ".join(f"`{w}`" for w in unique))
        if any(c.statuses.values()):
            out.append("")
        if c.sources:
            out.append("Raised in " + ", ".join(f"`{s}`" for s in sorted(set(c.sources))) + ".\n")
    return "\n".join(out)


def render_signals() -> str:
    out = []
    for s in collect_signals():
        out.append(f"```{{signal}} {s.name}\n```\n")
        out.append(f"{s.when}\n")
        out.append(f"**Arguments:** {s.arguments}\n")
        if "RevokeReason" in s.arguments:
            from rotating_tokens.models import RevokeReason

            values = ", ".join(f"`{value}` ({label})" for value, label in RevokeReason.choices)
            out.append(f"The reasons: {values}.\n")
    return "\n".join(out)


def render_operations() -> str:
    out = []
    for op in collect_operations():
        out.append(f"### `{op.method} {op.path}`\n")
        if op.summary:
            out.append(f"**{op.summary}**\n")
        if op.description:
            out.append(f"{op.description}\n")
        if op.parameters:
            out.append("| parameter | in | description |\n|---|---|---|")
            for p in op.parameters:
                desc = _md_escape_cell(p.get("description", ""))
                out.append(f"| `{p['name']}` | {p['in']} | {desc} |")
            out.append("")
        out.append("Example request:\n")
        out.append("```http")
        path = re.sub(r"\{\w+\}", SAMPLE_ID, op.path)
        out.append(f"{op.method} {path} HTTP/1.1")
        out.append("Host: api.example.com")
        if op.security:
            out.append(f"Authorization: Bearer {SAMPLES['access']}")
        if op.request_type:
            out.append("Content-Type: application/json")
            out.append("")
            out.append(json.dumps(op.request_example, indent=2, ensure_ascii=False))
        out.append("```\n")
        out.append("| status | meaning | codes |\n|---|---|---|")
        for status, description, codes, _ in op.responses:
            listed = ", ".join(f"{{errcode}}`{c}`" for c in codes)
            out.append(f"| {status} | {_md_escape_cell(description)} | {listed} |")
        out.append("")
        for status, _, _, example in op.responses:
            if example is not None and status.startswith("2"):
                out.append(f"Example response ({status}):\n")
                out.append("```json")
                out.append(json.dumps(example, indent=2, ensure_ascii=False))
                out.append("```\n")
                break
        else:
            success = next((s for s, *_ in op.responses if s.startswith("2")), None)
            if success:
                out.append(f"Example response: `{success}` with an empty body.\n")
    return "\n".join(out)


RENDERERS = {
    "rt-settings": render_settings,
    "rt-checks": render_checks,
    "rt-error-codes": render_codes,
    "rt-signals": render_signals,
    "rt-http-api": render_operations,
}


def setup(app: Any) -> dict[str, Any]:
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    def make(render: Any) -> type[SphinxDirective]:
        class Generated(SphinxDirective):
            has_content = False

            def run(self) -> list[nodes.Node]:
                container = nodes.container()
                text = render()
                self.state.nested_parse(
                    StringList(text.splitlines(), source=self.get_source_info()[0]),
                    self.content_offset,
                    container,
                )
                return container.children

        return Generated

    for name, render in RENDERERS.items():
        app.add_directive(name, make(render))
    app.add_object_type("setting", "setting", indextemplate="pair: %s; setting")
    app.add_object_type("check", "check", indextemplate="pair: %s; system check")
    app.add_object_type("errcode", "errcode", indextemplate="pair: %s; error code")
    app.add_object_type("signal", "signal", indextemplate="pair: %s; signal")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
