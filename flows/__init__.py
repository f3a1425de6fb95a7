"""The orchestration of stacflow: the spec model, the compiler from spec to plan, flows and CLI.

Nothing here touches asset bytes: every byte moves inside `tasks/`.
"""
