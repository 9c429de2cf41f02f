"""`resnext-explain`: one block taken apart, to show that forms (a), (b) and (c) compute the same function."""

from .lesson import Lesson, explain

__all__ = ["Lesson", "explain"]
