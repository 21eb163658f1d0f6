"""compare.pipeline.memo.ScopedMemo: remembers only inside a scope, bounded, cleared or kept when the scope closes."""

from compare.pipeline.memo import ScopedMemo


def test_values_are_made_afresh_outside_a_scope_and_once_inside():
    memo, made = ScopedMemo(), []
    make = lambda: made.append(1) or len(made)  # noqa: E731
    assert memo.get("k", make) == 1 and memo.get("k", make) == 2
    with memo.scope():
        assert memo.get("k", make) == 3 and memo.get("k", make) == 3
    with memo.scope():  # cleared when the last scope closed
        assert memo.get("k", make) == 4


def test_a_kept_memo_is_bounded_and_waits_for_the_next_scope():
    memo = ScopedMemo(max_entries=2, clear_on_close=False)
    with memo.scope():
        for key in "abc":
            memo.get(key, lambda key=key: key.upper())
    with memo.scope():
        assert memo.get("b", lambda: "new") == "B" and memo.get("c", lambda: "new") == "C"
        assert memo.get("a", lambda: "new") == "new"  # the least recently used went
    memo.clear()
    with memo.scope():
        assert memo.get("b", lambda: "again") == "again"
