"""Counts the words of the file named by the first argument; `top` comes from the context."""
import collections
import sys

with open(sys.argv[1], encoding="utf-8") as f:
    words = [w.strip(".,;:!?").lower() for w in f.read().split()]

result = {"words": len(words), "top": collections.Counter(words).most_common(top)}  # noqa: F821
