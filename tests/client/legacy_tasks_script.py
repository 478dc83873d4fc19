"""A program written for `TASKS = {}`: only the marked line differs.

Run as a script by tests/client/test_tasks_dict.py against a real server
(SWARMSITE_URL, SWARMSITE_API_KEY); prints what it read back as JSON.
"""

import json
import sys

from swarmsite_client import TasksDict

TASKS = TasksDict()  # was: TASKS = {}


def plan(prefix):
    for n in range(3):
        TASKS[f"{prefix}-step-{n}"] = {
            "description": f"Step {n} of the plan",
            "status": "pending",
            "progress": 0,
            "agents_involved": ["planner"],
            "session_id": prefix,
        }


def work(prefix):
    for n in range(3):
        key = f"{prefix}-step-{n}"
        TASKS[key]["status"] = "in_progress"
        TASKS[key]["progress"] = 50
        if n == 2:
            TASKS[key]["status"] = "failed"
            TASKS[key]["summary"] = "ran out of budget"
            continue
        TASKS[key]["results"] = {"answer": n * 10}
        TASKS[key]["status"] = "completed"
        TASKS[key]["progress"] = 100
    TASKS[f"{prefix}-late"] = {"description": "Added late", "status": "completed"}
    TASKS[f"{prefix}-late"].update(progress=100, reviewer="alice")


def report(prefix):
    mine = {k: v for k, v in TASKS.items() if k.startswith(prefix)}
    return {
        "len_at_least": len(TASKS),
        "keys": sorted(mine),
        "in": f"{prefix}-step-0" in TASKS,
        "not_in": f"{prefix}-nothing" in TASKS,
        "get_default": TASKS.get(f"{prefix}-nothing", "absent"),
        "tasks": {
            k: {
                "description": v["description"],
                "status": v["status"],
                "progress": v["progress"],
                "agents_involved": v["agents_involved"],
                "results": v["results"],
                "summary": v["summary"],
                "session_id": v["session_id"],
                "reviewer": v.get("reviewer"),
            }
            for k, v in mine.items()
        },
        "completed": sorted(
            k
            for k in TASKS
            if k.startswith(prefix) and TASKS[k]["status"] == "completed"
        ),
    }


if __name__ == "__main__":
    prefix = sys.argv[1]
    plan(prefix)
    work(prefix)
    print(json.dumps(report(prefix)))
