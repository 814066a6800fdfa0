"""Agent file-operation API: a workspace's files as readFile, writeFile, appendFile, ... tools.

``AgentFS(vol)`` (sync) and ``AsyncAgentFS(vol)`` (asyncio) over an open ``Volume``;
``tools`` generates OpenAI and Anthropic tool definitions and the ``call(name, arguments)``
dispatcher from one description; ``mcp_server`` serves the same tools over MCP stdio.
See docs/agentfs.md.
"""

from artifacts_agentfs.aio import AsyncAgentFS
from artifacts_agentfs.api import AgentFS
from artifacts_agentfs.limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "AgentFS", "AsyncAgentFS", "Limits"]
