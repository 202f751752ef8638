"""What the benchmark report scripts share: reading a PyTorch reference's JSON lines and formatting cells."""
import json


def load_torch(path):
    """name -> row, from a PyTorch reference's output (one JSON object per line; other lines are ignored)."""
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{") and '"name"' in line:
                r = json.loads(line)
                rows[r["name"]] = r
    return rows


def fmt(x, digits):
    """A number with `digits` decimals; empty for None."""
    return "" if x is None else f"{x:.{digits}f}"


def verdict(ok):
    """A target's cell: met, **not met**, or empty when it does not apply."""
    return "" if ok is None else ("met" if ok else "**not met**")
