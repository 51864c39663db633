"""daemon.json merged the way gpuctl's JsonMerge Op does it (docs/install.md, "Container
runtime"): objects key by key, the arrays named in `sets` as sets (the file's entries stay,
ours are appended, an entry `name=value` of ours replaces the file's `name=...`), anything
else replaced. Ansible's `combine` cannot express the set rule, hence this filter."""


def merge_daemon_json(current, ours, sets, at=""):
    out = dict(current or {})
    for key, value in ours.items():
        path = f"{at}.{key}" if at else key
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_daemon_json(out[key], value, sets, path)
        elif path in sets and isinstance(value, list) and isinstance(out.get(key), list):
            merged = list(out[key])
            for item in value:
                if item in merged:
                    continue
                name = item.split("=", 1)[0] + "=" if isinstance(item, str) and "=" in item else None
                at_name = [i for i, e in enumerate(merged) if name and isinstance(e, str) and e.startswith(name)]
                if at_name:
                    merged[at_name[0]] = item
                else:
                    merged.append(item)
            out[key] = merged
        else:
            out[key] = value
    return out


class FilterModule:
    def filters(self):
        return {"merge_daemon_json": merge_daemon_json}
