"""Copy committed result tables into the README between their markers.

    python results/update_readme.py

Each ``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->`` block of README.md is
replaced by the file NAME (a path under results/), so the README's numbers are those of
the committed files, never typed by hand. The documentation's pages (docs/) include the
same files directly (MyST ``{include}``), so they need no copy.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def update(readme: Path = ROOT / "README.md") -> list[str]:
    text = readme.read_text()
    names = re.findall(r"<!-- results:(\S+) -->", text)
    for name in names:
        body = (ROOT / "results" / name).read_text().strip()
        text = re.sub(rf"(<!-- results:{re.escape(name)} -->).*?(<!-- /results:{re.escape(name)} -->)",
                      lambda m: m.group(1) + "\n" + body + "\n" + m.group(2), text, flags=re.S)
    readme.write_text(text)
    return names


if __name__ == "__main__":
    print("updated:", ", ".join(update()) or "nothing", file=sys.stderr)
