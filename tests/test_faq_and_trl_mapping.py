"""docs/FAQ.md and the README's TRL/HALOs mapping: every answer linked, every link resolving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAQ = (ROOT / "docs" / "FAQ.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8")

#: The notebooks, by file name (the FAQ links to notebooks by name, not to cells).
NOTEBOOKS = {
    "01_loss_aversion.ipynb",
    "02_gradients_by_hand.ipynb",
    "03_training_a_toy_policy.ipynb",
    "04_variations.ipynb",
    "05_backends_and_scaling.ipynb",
}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def questions():
    parts = re.split(r"^## ", FAQ, flags=re.M)[1:]
    return [(part.splitlines()[0], part) for part in parts]


def test_every_answer_links_to_what_demonstrates_it():
    assert len(questions()) >= 12
    for question, body in questions():
        shown = [line for line in body.splitlines() if line.startswith("- Shown in:")]
        assert shown, question
        assert re.search(r"\]\((\.\./notebooks/|RESULTS\.md|VECTORS\.md)|`(minikto|tests)/",
                         body[body.index("- Shown in:"):]), question


def test_every_results_anchor_names_a_section_of_results_md():
    anchors = {github_anchor(h) for h in re.findall(r"^## (.+)$", RESULTS, flags=re.M)}
    linked = re.findall(r"\(RESULTS\.md#([^)]+)\)", FAQ)
    assert len(linked) >= 5
    for anchor in linked:
        assert anchor in anchors, anchor


def test_notebooks_are_linked_by_file_name():
    linked = set(re.findall(r"\.\./notebooks/(\w+\.ipynb)", FAQ))
    assert linked and linked <= NOTEBOOKS, linked - NOTEBOOKS


@pytest.mark.parametrize(
    "topic",
    ["KL always 0", "start at 0.5", "desirable_weight", "batch size 1", "z0 detached",
     "data formats", "NaN or missing", "learning rate and beta", "shuffle",
     "leading space", "end token", "KTO beat DPO"],
)
def test_the_faq_answers_each_question_of_the_field(topic):
    words = topic.lower().split()
    assert any(all(w in q.lower() or w in body.lower()[:400] for w in words)
               for q, body in questions()), topic


def test_the_readme_maps_minikto_to_trl_and_halos_and_links_the_faq():
    section = README[README.index("## From minikto to TRL and HALOs"):]
    section = section[: section.index("\n## ", 5)]
    header = next(line for line in section.splitlines() if line.startswith("| minikto"))
    assert header.split("|")[1:4] == [" minikto ", " TRL ", " HALOs "]
    for fact in ("WITHOUT beta", "y_{i+1}", "EXAMPLES seen", "dataloader.py",
                 "sequential sampler", "end token", "eos_token=None", "prompt + completion",
                 "docs/FAQ.md"):
        assert fact in section, fact
