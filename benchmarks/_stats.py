"Small statistics shared by the benchmark scripts (means and sample standard deviations that skip missing values)."
from __future__ import annotations
import math

def mean(xs):
    "Mean of the values that are not None or NaN; None when there are none."
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else None

def std(xs):
    "Sample standard deviation of the values that are not None; 0 for one value, None for none."
    xs = [x for x in xs if x is not None]
    if len(xs) < 2: return 0.0 if xs else None
    m = sum(xs) / len(xs)
    return (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5
