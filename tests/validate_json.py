#!/usr/bin/env python3
"""Validates cnnviz's JSON outputs against the published schemas.

usage: validate_json.py SCHEMAS_DIR FILE_OR_DIR... [--require KIND,KIND,...]

Each .json file is one document, each .jsonl file one document per line. A document's
"format" ("cnnviz/<kind>") picks SCHEMAS_DIR/<kind>.schema.json; a document without one, or
with an unknown kind, fails. --require lists kinds that must have been seen at least once (so
that a run that produced nothing cannot pass); with --require '' at least one document must
be there. Prints one line per problem and a summary;
exits 1 on any problem. Needs python3-jsonschema (Debian).
"""

import argparse
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    print("validate_json.py: python3-jsonschema is missing (scripts/test.sh installs it)",
          file=sys.stderr)
    sys.exit(2)


def documents(path):
    """(label, document) for every document in the file at `path`."""
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield f"{path}:{n}", json.loads(line)
        else:
            yield path, json.load(f)


def files(targets):
    for target in targets:
        if os.path.isdir(target):
            for root, _, names in os.walk(target):
                for name in sorted(names):
                    if name.endswith((".json", ".jsonl")):
                        yield os.path.join(root, name)
        else:
            yield target


def main():
    parser = argparse.ArgumentParser(description="Validate cnnviz JSON against schemas/")
    parser.add_argument("schemas")
    parser.add_argument("targets", nargs="+")
    parser.add_argument("--require", default="classify,manifest,journal,evaluate,layers,models",
                        help="kinds that must appear (comma-separated; '' for none)")
    args = parser.parse_args()

    validators = {}
    for name in os.listdir(args.schemas):
        if name.endswith(".schema.json"):
            with open(os.path.join(args.schemas, name), encoding="utf-8") as f:
                schema = json.load(f)
            jsonschema.Draft202012Validator.check_schema(schema)
            validators[name[: -len(".schema.json")]] = jsonschema.Draft202012Validator(schema)

    seen = {}
    problems = 0
    for path in files(args.targets):
        try:
            docs = list(documents(path))
        except (OSError, ValueError) as exc:
            print(f"{path}: not JSON: {exc}")
            problems += 1
            continue
        for label, doc in docs:
            kind = doc.get("format", "") if isinstance(doc, dict) else ""
            kind = kind[len("cnnviz/"):] if kind.startswith("cnnviz/") else ""
            if kind not in validators:
                print(f"{label}: no known \"format\" ({json.dumps(doc)[:80]})")
                problems += 1
                continue
            seen[kind] = seen.get(kind, 0) + 1
            for error in validators[kind].iter_errors(doc):
                where = "/".join(str(p) for p in error.absolute_path) or "(top)"
                print(f"{label}: {kind}: at {where}: {error.message[:300]}")
                problems += 1
    if not seen:
        print(f"no cnnviz document among {', '.join(args.targets)}")
        problems += 1
    for kind in filter(None, args.require.split(",")):
        if not seen.get(kind):
            print(f"no '{kind}' document among {', '.join(args.targets)}")
            problems += 1
    print("validated: " + (", ".join(f"{k} {n}" for k, n in sorted(seen.items())) or "nothing")
          + f"; {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
