"""Accessibility checks for the browser suite: axe-core in the page, and the console.

`assert_no_axe_violations(page)` runs axe-core (the copy axe-playwright-python ships) on
what the page shows now, with every rule axe runs by default (WCAG 2.0-2.2 A and AA, and
its best practices), and fails naming each violated rule, its impact and its first nodes.

`ConsoleWatch` collects every console error or warning and every uncaught exception of
the pages of a browser context; `assert_clean()` fails with them.
"""

from typing import Any

from axe_playwright_python.base import AXE_SCRIPT
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, WebError

# How many nodes of each violated rule a failure message shows.
NODES_SHOWN = 3


def axe_violations(page: Page, selector: str | None = None) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (or within `selector`)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Playwright evaluates outside the page's Content-Security-Policy.
        page.evaluate(AXE_SCRIPT)
    # Colours are checked as they rest: a fade (a notification's) or a transition caught
    # half-way would be a contrast that nobody reads. Each is run to its end first (an
    # endless one cannot be, and is left as it is).
    page.evaluate(
        """() => document.getAnimations().forEach(animation => {
            try { animation.finish(); } catch (endless) {} })"""
    )
    results = page.evaluate(
        "selector => axe.run(selector || document, {resultTypes: ['violations']})", selector
    )
    return results["violations"]


def describe(violations: list[dict[str, Any]]) -> str:
    """One paragraph per violated rule: id, impact, help, and its first nodes."""
    lines = []
    for violation in violations:
        nodes = violation["nodes"]
        lines.append(
            f"{violation['id']} ({violation['impact']}, {len(nodes)} node"
            f"{'' if len(nodes) == 1 else 's'}): {violation['help']}"
        )
        for node in nodes[:NODES_SHOWN]:
            target = " ".join(str(part) for part in node["target"])
            lines.append(f"    {target}: {node['html'][:160]}")
            if node.get("failureSummary"):
                summary = " ".join(node["failureSummary"].split())
                lines.append(f"      {summary[:240]}")
        if len(nodes) > NODES_SHOWN:
            lines.append(f"    … and {len(nodes) - NODES_SHOWN} more")
    return "\n".join(lines)


def assert_no_axe_violations(page: Page, what: str = "", selector: str | None = None) -> None:
    """Fail with a readable list if axe-core finds any violation on the page."""
    violations = axe_violations(page, selector)
    if violations:
        where = f"{what} ({page.url})" if what else page.url
        raise AssertionError(
            f"{len(violations)} axe-core rule{'' if len(violations) == 1 else 's'} violated "
            f"on {where}:\n{describe(violations)}"
        )


class ConsoleWatch:
    """Every console error or warning, and every uncaught exception, of the pages of the
    browser contexts it watches (pages opened later included)."""

    def __init__(self, *contexts: BrowserContext) -> None:
        self.problems: list[str] = []
        for context in contexts:
            self.watch(context)

    def watch(self, context: BrowserContext) -> "ConsoleWatch":
        context.on("console", self._on_console)
        context.on("weberror", self._on_error)
        return self

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type not in {"error", "warning"}:
            return
        page = message.page.url if message.page else "?"
        where = message.location.get("url", "")
        if message.text.startswith("Failed to load resource") and where == page:
            # Chromium's note that the page itself came with an error status (a 404 page
            # the test asked for); a script, style or image that failed still counts.
            return
        self.problems.append(f"console.{message.type} on {page}: {message.text} {where}")

    def _on_error(self, error: WebError) -> None:
        page = error.page.url if error.page else "?"
        self.problems.append(f"uncaught error on {page}: {error.error}")

    def assert_clean(self) -> None:
        assert not self.problems, "the browser console was not clean:\n" + "\n".join(self.problems)
