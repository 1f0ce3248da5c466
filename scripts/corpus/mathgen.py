"""Seeded generator of worked math problems for the math domain's synthetic part.

Each problem is one document: a statement and a worked solution. The same seed gives the same
sequence on every machine (random.Random with an integer seed; no hash randomisation, no floats
in the output). Templates are easy to memorise, so build_text.py keeps this part a minority.
"""

import math
import random
from fractions import Fraction

KINDS = ("arithmetic", "linear", "fraction", "gcd", "factor", "derivative", "modpow", "word")


def _arithmetic(r):
    a, b, c = r.randint(2, 999), r.randint(2, 999), r.randint(2, 99)
    op = r.choice(["+", "-", "*"])
    inner = a + b if op == "+" else a - b if op == "-" else a * b
    return (f"Compute ({a} {op} {b}) * {c} + {c}.",
            f"First the parentheses: {a} {op} {b} = {inner}.\n"
            f"Then {inner} * {c} = {inner * c}.\n"
            f"Finally {inner * c} + {c} = {inner * c + c}.\n"
            f"Answer: {inner * c + c}")


def _linear(r):
    x = r.randint(-30, 30)
    a = r.choice([i for i in range(-12, 13) if i not in (0, 1)])
    b = r.randint(-50, 50)
    c = a * x + b
    return (f"Solve for x: {a}x + {b} = {c}." if b >= 0 else f"Solve for x: {a}x - {-b} = {c}.",
            f"Subtract {b} from both sides: {a}x = {c} - ({b}) = {c - b}.\n"
            f"Divide both sides by {a}: x = {c - b} / {a} = {x}.\n"
            f"Check: {a} * {x} + ({b}) = {a * x + b}.\n"
            f"Answer: x = {x}")


def _fraction(r):
    p = Fraction(r.randint(1, 12), r.randint(2, 15))
    q = Fraction(r.randint(1, 12), r.randint(2, 15))
    op = r.choice(["+", "-", "*", "/"])
    res = p + q if op == "+" else p - q if op == "-" else p * q if op == "*" else p / q
    if op in "+-":
        den = p.denominator * q.denominator // math.gcd(p.denominator, q.denominator)
        steps = (f"The least common denominator of {p.denominator} and {q.denominator} is "
                 f"{den}.\n{p} = {p.numerator * den // p.denominator}/{den} and "
                 f"{q} = {q.numerator * den // q.denominator}/{den}.\n")
    elif op == "*":
        steps = (f"Multiply numerators and denominators: {p.numerator * q.numerator}/"
                 f"{p.denominator * q.denominator}.\n")
    else:
        steps = f"Dividing by {q} is multiplying by {1 / q}.\n"
    return (f"Simplify {p} {op} {q}.",
            steps + f"In lowest terms the result is {res}.\nAnswer: {res}")


def _gcd(r):
    g = r.randint(2, 40)
    a, b = g * r.randint(2, 60), g * r.randint(2, 60)
    lines = []
    x, y = max(a, b), min(a, b)
    while y:
        lines.append(f"{x} = {x // y} * {y} + {x % y}")
        x, y = y, x % y
    lcm = a * b // x
    return (f"Find gcd({a}, {b}) and lcm({a}, {b}).",
            "Euclid's algorithm:\n" + "\n".join(lines) +
            f"\nThe last non-zero remainder is {x}, so gcd = {x}.\n"
            f"lcm = {a} * {b} / {x} = {lcm}.\nAnswer: gcd = {x}, lcm = {lcm}")


def _factor(r):
    n = 1
    for _ in range(r.randint(2, 5)):
        n *= r.choice([2, 2, 3, 3, 5, 7, 11, 13, 17, 19, 23])
    steps, m, f, factors = [], n, 2, []
    while m > 1:
        while m % f == 0:
            steps.append(f"{m} / {f} = {m // f}")
            factors.append(f)
            m //= f
        f += 1
    powers = []
    for p in sorted(set(factors)):
        k = factors.count(p)
        powers.append(f"{p}^{k}" if k > 1 else str(p))
    return (f"Write {n} as a product of primes.",
            "Divide by the smallest prime each time:\n" + "\n".join(steps) +
            f"\nAnswer: {n} = {' * '.join(powers)}")


def _poly(coeffs):
    terms = []
    for k in range(len(coeffs) - 1, -1, -1):
        c = coeffs[k]
        if c == 0:
            continue
        mag = abs(c)
        body = (str(mag) if k == 0 or mag != 1 else "") + ("x" if k >= 1 else "") + (
            f"^{k}" if k >= 2 else "")
        sign = "-" if c < 0 else "+"
        terms.append((sign, body))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    s = ("-" if first_sign == "-" else "") + first
    for sign, body in terms[1:]:
        s += f" {sign} {body}"
    return s


def _derivative(r):
    deg = r.randint(2, 5)
    coeffs = [r.randint(-9, 9) for _ in range(deg)] + [r.choice([-3, -2, -1, 1, 2, 3, 4, 5])]
    d = [k * coeffs[k] for k in range(1, len(coeffs))]
    steps = [f"d/dx {_poly([0] * k + [coeffs[k]])} = {_poly([0] * (k - 1) + [k * coeffs[k]])}"
             for k in range(len(coeffs) - 1, 0, -1) if coeffs[k]]
    x0 = r.randint(-3, 3)
    val = sum(c * x0 ** k for k, c in enumerate(d))
    return (f"Differentiate f(x) = {_poly(coeffs)} and evaluate f'({x0}).",
            "Use the power rule term by term:\n" + "\n".join(steps) +
            f"\nSo f'(x) = {_poly(d)}.\nf'({x0}) = {val}.\nAnswer: {val}")


def _modpow(r):
    a, e, m = r.randint(2, 50), r.randint(5, 200), r.randint(3, 97)
    lines, result, base, k = [], 1, a % m, e
    lines.append(f"{e} in binary is {bin(e)[2:]}.")
    while k:
        if k & 1:
            lines.append(f"bit 1: result = {result} * {base} mod {m} = {result * base % m}")
            result = result * base % m
        base2 = base * base % m
        k >>= 1
        if k:
            lines.append(f"square: {base}^2 mod {m} = {base2}")
        base = base2
    return (f"Compute {a}^{e} mod {m}.",
            "Square and multiply:\n" + "\n".join(lines) + f"\nAnswer: {result}")


_NAMES = ["Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
_ITEMS = [("apples", 3), ("notebooks", 4), ("tickets", 12), ("pencils", 1), ("books", 15)]


def _word(r):
    name = r.choice(_NAMES)
    item, base_price = r.choice(_ITEMS)
    n, price, paid_extra = r.randint(2, 25), base_price + r.randint(0, 9), r.randint(1, 40)
    total = n * price
    paid = total + paid_extra
    return (f"{name} buys {n} {item} at {price} dollars each and pays with {paid} dollars. "
            f"How much change does {name} get?",
            f"The cost is {n} * {price} = {total} dollars.\n"
            f"The change is {paid} - {total} = {paid_extra} dollars.\n"
            f"Answer: {paid_extra} dollars")


_MAKERS = {"arithmetic": _arithmetic, "linear": _linear, "fraction": _fraction, "gcd": _gcd,
           "factor": _factor, "derivative": _derivative, "modpow": _modpow, "word": _word}


def problems(seed, count):
    """Yields (kind, text) for `count` problems; deterministic for a seed."""
    r = random.Random(seed)
    for _ in range(count):
        kind = KINDS[r.randrange(len(KINDS))]
        question, solution = _MAKERS[kind](r)
        yield kind, f"Problem: {question}\n\nSolution:\n{solution}"
