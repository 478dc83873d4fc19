"""Reads behind the swarm view: the board and one task's snapshot.

Each function answers one JSON request of the swarm pages with a fixed
number of queries, whatever the number of tasks, runs or messages: a task's
subtree is one recursive query used as a subquery by every other read, and
lists are capped (`truncated` says when a cap cut one).

The latest event position is read first, so everything read after it is at
least as new: a page that follows the event stream after that position
misses nothing, and an event it gets twice (once in the snapshot, once from
the stream) only sets what is already shown.

A package by concern (`board`, `task`, the `subtree` reads, the caps and row
`shapes`); the view's reads are re-exported here, so callers import from
`reports.swarm_selectors`.
"""

from reports.swarm_selectors.board import (
    swarm_board,
    swarm_event_feed,
    swarm_project,
    swarm_projects,
)
from reports.swarm_selectors.task import swarm_task_head, swarm_task_snapshot

__all__ = [
    "swarm_board",
    "swarm_event_feed",
    "swarm_project",
    "swarm_projects",
    "swarm_task_head",
    "swarm_task_snapshot",
]
