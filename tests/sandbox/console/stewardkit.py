"""Helpers of the steward pages' tests: a page's form read as a browser would submit it."""

from __future__ import annotations

from html.parser import HTMLParser

from werkzeug.datastructures import MultiDict


class _FormReader(HTMLParser):
    """The fields a browser submits from the form whose ``action`` is given: inputs (checked ones for
    checkboxes and radios), selected options, textareas."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside, self.fields = action, False, MultiDict[str, str]()
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action") == self.action
        if not self.inside or ("name" not in a and tag in {"input", "select", "textarea"}):
            return
        if tag == "input" and (a.get("type") not in {"checkbox", "radio", "file", "submit"} or "checked" in a):
            if a.get("type") != "file":
                self.fields.add(a["name"], a.get("value", "on" if a.get("type") == "checkbox" else ""))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and "selected" in a:
            self.fields.add(self._select, a.get("value", ""))
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields.add(self._textarea, "")

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields.setlist(self._textarea, [self.fields.get(self._textarea, "") + data])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_fields(page: str, action: str) -> MultiDict[str, str]:
    reader = _FormReader(action)
    reader.feed(page)
    assert reader.fields, f"no form with action {action}"
    return reader.fields
