from pathlib import Path

from packd.benchpage import printed_copy, render_page, write_page


def test_page_holds_the_command_the_machine_and_the_output_verbatim() -> None:
    output = "arch  ratio\nlstm   1.23\n"
    page = render_page(
        "Bench", ["benchmarks_scripts/b.py", "--app", "bc x"], "How to read.", output
    )
    assert page.startswith("# Bench\n")
    assert "`python benchmarks_scripts/b.py --app 'bc x'`" in page  # quoted, so it reruns as is
    assert "torch " in page and " cores of " in page
    assert "```text\narch  ratio\nlstm   1.23\n```" in page
    assert page.index("How to read.") < page.index("```text")


def test_write_page_creates_the_folder(tmp_path: Path) -> None:
    target = tmp_path / "docs" / "benchmarks" / "b.md"
    write_page(target, "Bench", "", "figures")
    assert "figures" in target.read_text()


def test_printed_copy_keeps_what_was_printed_and_still_prints_it(capsys) -> None:
    with printed_copy() as printed:
        print("lstm 1.23")
        print("mixer", 4.5)
    print("after")
    assert printed.getvalue() == "lstm 1.23\nmixer 4.5\n"
    assert capsys.readouterr().out == "lstm 1.23\nmixer 4.5\nafter\n"
