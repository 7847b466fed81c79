import sys, json
src, dst = sys.argv[1], sys.argv[2]
nb = json.load(open(src))
for c in nb["cells"]:
    if "parameters" in c.get("metadata", {}).get("tags", []):
        s = "".join(c["source"])
        s = s.replace("PEOPLE = None", "PEOPLE = 20").replace("SWEEP_STEPS = 30", "SWEEP_STEPS = 3").replace("EVAL_PEOPLE = 50", "EVAL_PEOPLE = 5")
        c["source"] = s
json.dump(nb, open(dst, "w"))
