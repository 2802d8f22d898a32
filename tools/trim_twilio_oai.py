#!/usr/bin/env python3
"""Extracts the two Twilio operations the relay calls from twilio/twilio-oai's
spec/json/twilio_api_v2010.json (MIT): CreateMessage (POST) and ListMessage
(GET) on /2010-04-01/Accounts/{AccountSid}/Messages.json, with the schemas they
reference. Usage: trim_twilio_oai.py twilio_api_v2010.json COMMIT > out.json"""
import json
import sys

PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"

spec = json.load(open(sys.argv[1]))
commit = sys.argv[2] if len(sys.argv) > 2 else "unknown"
path = spec["paths"][PATH]
out = {
    "openapi": spec["openapi"],
    "info": dict(spec["info"], **{"x-extract": f"twilio/twilio-oai@{commit} spec/json/twilio_api_v2010.json, "
                                  f"paths[{PATH}].get/post only (tools/trim_twilio_oai.py)"}),
    "servers": spec.get("servers", []),
    "paths": {PATH: {k: path[k] for k in ("servers", "get", "post") if k in path}},
    "components": {"securitySchemes": spec["components"]["securitySchemes"], "schemas": {}},
}


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


todo = list(refs(out["paths"]))
while todo:
    ref = todo.pop()
    name = ref.rsplit("/", 1)[-1]
    if name in out["components"]["schemas"]:
        continue
    schema = spec["components"]["schemas"][name]
    out["components"]["schemas"][name] = schema
    todo.extend(refs(schema))
json.dump(out, sys.stdout, indent=1, sort_keys=True)
print()
