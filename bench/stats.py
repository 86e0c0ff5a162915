"""The one percentile both sides of the values benchmark report, so that their figures compare."""


def pct(vals, p):
    """Nearest-rank percentile (p in 0..100) in ms rounded to 3 places; None for an empty list."""
    if not vals:
        return None
    s = sorted(vals)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return round(s[k], 3)
