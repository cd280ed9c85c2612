"""report.html read back as a tree, for the report tests: ``Node``s with tag, attrs, children, text."""
from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Callable

VOID = {"img", "br", "meta", "link", "input", "hr", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list["Node"] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)  # this node's own text

    @property
    def text(self) -> str:
        """All text below this node, in order."""
        return "".join(self.parts) + "".join(c.text for c in self.children)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, match: Callable[["Node"], bool]) -> list["Node"]:
        out = []
        for child in self.children:
            if match(child):
                out.append(child)
            out.extend(child.find_all(match))
        return out

    def select(self, tag: str, cls: str | None = None, **attrs: str) -> list["Node"]:
        """Descendants with ``tag`` (``*``: any), class ``cls`` and ``data_x="v"`` attributes (``data-x``)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return self.find_all(lambda n: (tag == "*" or n.tag == tag) and (cls is None or cls in n.classes())
                             and all(n.attrs.get(k) == v for k, v in wanted.items()))

    def one(self, tag: str, cls: str | None = None, **attrs: str) -> "Node":
        found = self.select(tag, cls, **attrs)
        assert len(found) == 1, (tag, cls, attrs, len(found))
        return found[0]


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = Node("root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while len(self.stack) > 1:
            if self.stack.pop().tag == tag:
                break

    def handle_data(self, data):
        self.stack[-1].parts.append(data)


def parse(text: str) -> Node:
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root
