"""The loader, fed mutated example files: every document is accepted or refused with a
located ConfigError, never anything else, and fast.  A seeded generator, so a failure
names the seed that reproduces it.  NETVIRT_FUZZ=10000 for a nightly-sized run."""
import os
import random
import time
from pathlib import Path

import pytest

from netvirt.config import load_text
from netvirt.errors import ConfigError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
COUNT = int(os.environ.get("NETVIRT_FUZZ", "1000"))
SCALARS = ["2021-13-45", "2021-02-30 25:61:00", "!!int x", "!!float y", "!!bool maybe",
           "!!timestamp q", "!!null x", "!!map a", "!!seq a", "!!str [1]", "!!binary zz",
           "!custom x", "9" * 5000, "-9" * 2200, "1e999", "-1", "0x1F", "0o777", "0b101",
           ".nan", ".inf", "~", "null", "{}", "[]", "[[]]", "{a: {b: {c: 1}}}", "yes", "on",
           "off", "'unterminated", '"bad \\uZZZZ"', '"\\x00"', "&anchor v", "*alias",
           "<<: *x", "? complex", "- item", "@reserved", "`tick", "%TAG", "|", ">-",
           "[" * 40 + "]" * 40, "[" * 600 + "]" * 600, "é", "\t", "a: b: c", "...", "---",
           "02:00:00:00:00:01", "10.0.0.1/33", "300.1.1.1", "::1", "tcp:1.2.3.4:99999",
           "unix:", "ssl:1.2.3.4:6640", "br-int", "nv-vxlan", "x" * 300, ""]
TOKENS = list("{}[]:,-!&*#|>'\"%@`?\t\n ") + ["\n  ", ": ", "- ", "!!", "\\"]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 4)):
        # mostly values replaced: that keeps the YAML well-formed often enough to reach the
        # constructors, the schema and the cross-object checks
        op = rng.choices(range(8), weights=[10, 2, 2, 1, 1, 1, 1, 2])[0]
        i = rng.randrange(len(lines)) if lines else 0
        if not lines:
            lines = [rng.choice(SCALARS) + "\n"]
        elif op == 0:  # a value replaced
            line = lines[i]
            if ":" in line:
                key = line.split(":", 1)[0]
                lines[i] = f"{key}: {rng.choice(SCALARS)}\n"
        elif op == 1:  # a character deleted
            if lines[i]:
                j = rng.randrange(len(lines[i]))
                lines[i] = lines[i][:j] + lines[i][j + 1:]
        elif op == 2:  # a token inserted
            j = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:j] + rng.choice(TOKENS) + lines[i][j:]
        elif op == 3:
            lines.insert(i, lines[i])  # a line twice
        elif op == 4:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 5:
            lines = lines[:i]  # cut short
        elif op == 6:  # indentation changed
            lines[i] = (" " * rng.choice([1, 2, 4]) + lines[i]) if rng.random() < 0.5 \
                else lines[i].lstrip()
        else:
            lines.insert(i, rng.choice(SCALARS) + "\n")
    return "".join(lines)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_mutated_examples_are_accepted_or_refused_with_a_location(example):
    base = example.read_text()
    rng = random.Random(f"netvirt-fuzz/{example.name}")
    per_file = max(1, COUNT // len(EXAMPLES))
    for n in range(per_file):
        doc = mutate(base, rng)
        t0 = time.monotonic()
        try:
            load_text(doc, "f.yaml")
        except ConfigError as e:
            assert e.diagnostics and all(d.line >= 1 and d.col >= 1 for d in e.diagnostics), \
                (n, doc)
        except Exception as e:
            raise AssertionError(f"{example.name} mutation #{n} ended in {type(e).__name__}: "
                                 f"{e}\n--- document:\n{doc[:2000]}") from None
        assert time.monotonic() - t0 < 2.0, f"{example.name} mutation #{n} took over 2 s"
