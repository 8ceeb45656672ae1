from langchain_dualmem import __all__

EXPECTED_ALL = [
    "__version__",
    "DualMemChatMessageHistory",
    "DualMemMiddleware",
    "DualMemRecallTool",
    "DualMemRememberTool",
    "DualMemRetriever",
    "DualMemStore",
    "create_recall_tool",
    "create_remember_tool",
]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)
