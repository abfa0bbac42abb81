"""Writes the same 50 flags for Sextant (API bodies) and Unleash (features file).

Each flag: string `in` on tier, semver > 4.2.0 on appVersion, 10% rollout.
"""
import json
import sys

out = sys.argv[1]
N = 50
sextant, features = [], []
for i in range(N):
    key = f"flag-{i}"
    sextant.append({
        "flag": {
            "key": key, "kind": "boolean",
            "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "hypothesis": {"operational": True, "reason": "benchmark flag"},
            "environments": {"production": {
                "enabled": True, "off_variation": "off",
                "rules": [
                    {"conditions": [{"attribute": "tier", "op": "in", "values": ["gold", "platinum", "diamond"]}], "serve": {"variation": "on"}},
                    {"conditions": [{"attribute": "appVersion", "op": "semver_gt", "values": ["4.2.0"]}], "serve": {"variation": "on"}},
                    {"rollout": {"weight": 10000}, "serve": {"variation": "on"}},
                ],
                "default_serve": {"variation": "off"},
            }},
        },
        "reason": "benchmark",
    })
    features.append({
        "name": key, "enabled": True, "type": "release", "project": "default",
        "strategies": [
            {"name": "default", "parameters": {}, "constraints": [{"contextName": "tier", "operator": "IN", "values": ["gold", "platinum", "diamond"]}]},
            {"name": "default", "parameters": {}, "constraints": [{"contextName": "appVersion", "operator": "SEMVER_GT", "value": "4.2.0"}]},
            {"name": "flexibleRollout", "parameters": {"rollout": "10", "stickiness": "default", "groupId": key}},
        ],
    })
with open(f"{out}/sextant-flags.jsonl", "w") as f:
    for body in sextant:
        f.write(json.dumps(body) + "\n")
with open(f"{out}/unleash-features.json", "w") as f:
    json.dump({"version": 2, "features": features}, f)
