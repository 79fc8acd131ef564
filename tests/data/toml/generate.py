#!/usr/bin/python3
"""Regenerates the tomllib reference answers for the TOML cross-check in tests/unit/test_toml.c.

For every NAME.toml here, writes NAME.json: a flat object mapping each leaf's full dotted key to
{"type": "string"|"integer"|"float"|"bool", "value": "<text>"} or {"type": "array", "value": [...]},
exactly as Python 3.11's tomllib reads the document (floats as repr(), so they round-trip).
For every NAME.bad.toml, checks that tomllib rejects it and writes NAME.bad.json with its message
and line ("line": null when tomllib names no line). Run with /usr/bin/python3 from this folder.
"""
import json
import pathlib
import re
import sys
import tomllib


def tag(v):
    if isinstance(v, bool):
        return {"type": "bool", "value": "true" if v else "false"}
    if isinstance(v, int):
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": repr(v)}
    if isinstance(v, str):
        return {"type": "string", "value": v}
    if isinstance(v, list):
        return {"type": "array", "value": [tag(x) for x in v]}
    raise TypeError(f"unsupported value {v!r}")


def flatten(table, prefix, out):
    for k, v in table.items():
        assert "." not in k, f"key {k!r} contains '.'"
        path = prefix + k
        if isinstance(v, dict):
            flatten(v, path + ".", out)
        else:
            out[path] = tag(v)
    return out


def main():
    here = pathlib.Path(__file__).resolve().parent
    for src in sorted(here.glob("*.toml")):
        raw = src.read_bytes()
        dst = src.with_suffix(".json")
        if src.name.endswith(".bad.toml"):
            try:
                tomllib.loads(raw.decode("utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                m = re.search(r"at line (\d+)", str(e))
                answer = {"error": str(e), "line": int(m.group(1)) if m else None}
            else:
                sys.exit(f"{src.name}: tomllib accepts it")
        else:
            answer = flatten(tomllib.loads(raw.decode("utf-8")), "", {})
        dst.write_text(json.dumps(answer, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
