"""TRL's dataset formats: files that survive TRL's joining, and every format TRL's trainers read.

TRL tokenises ``prompt + completion`` with nothing in between; ``minikto train --data``
reads the unpaired and the paired format (unpairing for an unpaired loss, as KTOTrainer
does) and their single-turn conversational forms, and refuses multi-turn ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from minikto.data.feedback import PairedDataset, UnpairedDataset, sample_paired, unpair
from minikto.data.jsonl import DatasetFormatError, read_paired, write_paired
from minikto.data.toy import bandit_task, default_task
from minikto.data.trl_formats import read_for_training
from minikto.tools.cli import main

TASK = default_task()


def known_words(task):
    return {w for p in task.prompts for w in p.split()} | set(task.vocab)


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def user(text):
    return [{"role": "user", "content": text}]


def assistant(text):
    return [{"role": "assistant", "content": text}]


# ------------------------------------------------------------------------------------------
# Joined as TRL joins them, the files tokenise into known words only


@pytest.mark.parametrize("task_name", ["default", "bandit"])
@pytest.mark.parametrize("paired", [False, True])
def test_minikto_data_joined_as_trl_joins_it_has_only_known_words(tmp_path, capsys, task_name,
                                                                   paired):
    path = tmp_path / "data.jsonl"
    argv = ["data", "--out", str(path), "--n", "200", "--task", task_name]
    assert main(argv + (["--paired"] if paired else [])) == 0
    task = bandit_task() if task_name == "bandit" else default_task()
    words = known_words(task)
    keys = ("chosen", "rejected") if paired else ("completion",)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) >= 200
    for record in records:
        for key in keys:
            assert record[key].startswith(" ") and not record[key].startswith("  ")
            joined = record["prompt"] + record[key]  # TRL: prompt + completion, nothing between
            assert set(joined.split()) <= words, joined
            assert joined.split() == record["prompt"].split() + record[key].split()


def test_completions_with_or_without_the_leading_space_read_the_same(tmp_path):
    spaced = write_lines(tmp_path / "a.jsonl", [
        {"prompt": "greet a friend", "chosen": " hello friend .", "rejected": " whatever ."}])
    bare = write_lines(tmp_path / "b.jsonl", [
        {"prompt": "greet a friend", "chosen": "hello friend .", "rejected": "whatever ."}])
    a, b = read_paired(spaced, TASK), read_paired(bare, TASK)
    np.testing.assert_array_equal(a.chosen, b.chosen)
    np.testing.assert_array_equal(a.rejected, b.rejected)


# ------------------------------------------------------------------------------------------
# read_for_training: the formats TRL reads


def test_a_paired_file_for_an_unpaired_loss_is_unpaired_as_kto_trainer_does(tmp_path):
    pairs = sample_paired(TASK, 50, seed=3)
    write_paired(tmp_path / "p.jsonl", pairs, TASK)
    data, notes = read_for_training(tmp_path / "p.jsonl", TASK, paired=False)
    expected = unpair(pairs)
    assert isinstance(data, UnpairedDataset) and len(data) == 2 * len(pairs)
    np.testing.assert_array_equal(data.responses, expected.responses)
    np.testing.assert_array_equal(data.desirable, expected.desirable)
    assert any("paired format" in note for note in notes)
    assert any("unpaired the 50 pairs as TRL's KTOTrainer does" in note for note in notes)


def test_a_paired_file_for_dpo_stays_paired_and_an_unpaired_one_is_refused(tmp_path):
    pairs = sample_paired(TASK, 20, seed=4)
    write_paired(tmp_path / "p.jsonl", pairs, TASK)
    data, notes = read_for_training(tmp_path / "p.jsonl", TASK, paired=True)
    assert isinstance(data, PairedDataset) and len(data) == 20
    assert not any("unpaired" in note for note in notes)
    path = write_lines(tmp_path / "u.jsonl", [
        {"prompt": "greet a friend", "completion": " hello .", "label": True}])
    with pytest.raises(DatasetFormatError, match=r"line 1: missing key 'chosen': a paired "
                       r"loss \(dpo\) needs"):
        read_for_training(path, TASK, paired=True)


def test_single_turn_conversational_rows_are_read_by_their_message_contents(tmp_path):
    conversational = write_lines(tmp_path / "c.jsonl", [
        {"prompt": user("greet a friend"), "completion": assistant("hello friend ."),
         "label": True},
        {"prompt": user("praise the food"), "completion": assistant("awful ."), "label": False},
    ])
    standard = write_lines(tmp_path / "s.jsonl", [
        {"prompt": "greet a friend", "completion": " hello friend .", "label": True},
        {"prompt": "praise the food", "completion": " awful .", "label": False},
    ])
    data, notes = read_for_training(conversational, TASK, paired=False)
    want, _ = read_for_training(standard, TASK, paired=False)
    np.testing.assert_array_equal(data.prompts, want.prompts)
    np.testing.assert_array_equal(data.responses, want.responses)
    np.testing.assert_array_equal(data.desirable, want.desirable)
    assert "conversational unpaired" in notes[0]


def test_paired_conversational_rows_are_read_and_unpaired(tmp_path):
    path = write_lines(tmp_path / "c.jsonl", [
        {"prompt": user("greet a friend"), "chosen": assistant("hello friend ."),
         "rejected": assistant("whatever .")}])
    pairs, _ = read_for_training(path, TASK, paired=True)
    assert TASK.decode(pairs.chosen[0]) == "hello friend ."
    data, notes = read_for_training(path, TASK, paired=False)
    assert data.desirable.tolist() == [True, False] and "unpaired the 1 pairs" in notes[-1]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": [{"role": "system", "content": "be kind"}, *user("greet a friend")],
          "completion": assistant("hello ."), "label": True},
         r"prompt: expected a single-turn conversation, one 'user' message; got 2 messages "
         r"with the roles \['system', 'user'\]\. Multi-turn conversations are not read"),
        ({"prompt": user("greet a friend"),
          "completion": [*assistant("hello ."), *user("and?"), *assistant("friend .")],
          "label": True},
         r"completion: expected a single-turn conversation, one 'assistant' message; got 3"),
        ({"prompt": user("greet a friend"), "completion": user("hello ."), "label": True},
         r"completion: expected a single-turn conversation, one 'assistant' message; got 1 "
         r"messages with the roles \['user'\]"),
        ({"prompt": [{"role": "user"}], "completion": assistant("hello ."), "label": True},
         r"prompt: expected messages \{\"role\": \.\.\., \"content\": \.\.\.\}"),
        ({"prompt": 7, "completion": " hello .", "label": True},
         r"prompt: expected a JSON string or a single-turn conversation; got number 7"),
        ({"chosen": " hello .", "rejected": " whatever ."},
         r"missing key 'prompt': TRL's implicit-prompt format"),
        ({"text": "hello"}, r"expected TRL's unpaired keys 'prompt', 'completion', 'label' or "
         r"paired keys"),
    ],
    ids=["system+user", "multi-turn", "wrong role", "no content", "number", "implicit prompt",
         "language modeling"],
)
def test_multi_turn_and_unknown_formats_are_refused_naming_the_format(tmp_path, record,
                                                                     message):
    path = write_lines(tmp_path / "bad.jsonl", [record])
    with pytest.raises(DatasetFormatError, match=message):
        read_for_training(path, TASK, paired=False)


def test_every_record_must_hold_the_format_of_the_first(tmp_path):
    path = write_lines(tmp_path / "mixed.jsonl", [
        {"prompt": "greet a friend", "completion": " hello .", "label": True},
        {"prompt": "greet a friend", "chosen": " hello .", "rejected": " whatever ."},
    ])
    with pytest.raises(DatasetFormatError, match=r"line 2: missing key 'completion'"):
        read_for_training(path, TASK, paired=False)


def test_read_for_training_refuses_a_paired_flag_that_is_not_a_bool(tmp_path):
    with pytest.raises(TypeError, match="paired: expected a bool; got 'yes'"):
        read_for_training(tmp_path / "x.jsonl", TASK, paired="yes")


# ------------------------------------------------------------------------------------------
# minikto train --data, through the command's main() (as test_cli does)


def test_train_on_a_paired_file_with_kto_unpairs_it_and_says_so(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    assert main(["data", "--out", str(data), "--paired", "--n", "100"]) == 0
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(data),
                 "--max-steps", "5"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "unpaired the 100 pairs as TRL's KTOTrainer does" in err
    assert "undesirable (200 examples)" in err


def test_train_on_a_single_turn_conversational_file_exits_0(tmp_path, capsys):
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        prompt = TASK.prompts[i % TASK.num_prompts]
        words = " ".join(rng.choice(TASK.vocab[:-1], size=2)) + " ."
        records.append({"prompt": user(prompt), "completion": assistant(words),
                        "label": bool(i % 3)})
    data = write_lines(tmp_path / "chat.jsonl", records)
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(data),
                 "--max-steps", "5"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "conversational" in err


def test_the_data_flag_help_names_every_format_read(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("{prompt, completion, label}", "{prompt, chosen, rejected}", "conversational",
                  "multi-turn", "implicit-prompt", "dpo needs pairs"):
        assert words in text, words
