"""The MCP server over stdio with a scripted model, for tests/test_mcp.py (run as a script:
the SDK's client starts it as a subprocess). argv: data_dir [default user_id]."""

import sys

from dualmem import DualMemory
from dualmem.mcp_server import serve
from dualmem.testing import ScriptedLLM, ScriptedReply

if __name__ == "__main__":
    llm = ScriptedLLM(by_task={"answer": lambda request: ScriptedReply("Lisbon", confidence=0.97)},
                      default="{}")
    memory = DualMemory(path=sys.argv[1], llm=llm, extract=False)
    serve(memory, user_id=sys.argv[2] if len(sys.argv) > 2 else None)
