"""Submitting an HTML form as a browser would: every field it holds, with its value as
the page shows it (for the admin's change forms, which have many)."""

from rooms.tests import fragments

NOT_SUBMITTED = {"submit", "button", "image", "reset", "file"}


def form_fields(html: str, form_id: str) -> dict[str, list[str]]:
    """The fields of the form `#form_id` in `html`, as a browser would submit it
    unchanged: {name: [values]} (checked boxes only, selected options, no buttons)."""
    form = fragments.parse(html).by_id(form_id)
    assert form is not None and form.tag == "form", f"no <form id={form_id!r}> in the page"
    fields: dict[str, list[str]] = {}
    for element in form.iter():
        name = element.attrs.get("name")
        if not name or "disabled" in element.attrs:
            continue
        if element.tag == "input":
            kind = (element.attrs.get("type") or "text").lower()
            if kind in NOT_SUBMITTED:
                continue
            if kind in {"checkbox", "radio"}:
                if "checked" in element.attrs:
                    fields.setdefault(name, []).append(element.attrs.get("value") or "on")
                continue
            fields.setdefault(name, []).append(element.attrs.get("value") or "")
        elif element.tag == "select":
            options = element.find_all("option")
            chosen = [option for option in options if "selected" in option.attrs]
            if not chosen and "multiple" not in element.attrs:
                chosen = options[:1]
            values = [_option_value(option) for option in chosen]
            fields.setdefault(name, []).extend(values)
        elif element.tag == "textarea":
            fields.setdefault(name, []).append(element.text)
    return fields


def _option_value(option: fragments.Element) -> str:
    value = option.attrs.get("value")
    return option.text if value is None else value


def as_pairs(fields: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The fields as (name, value) pairs, the way a form is encoded."""
    return [(name, value) for name, values in fields.items() for value in values]
