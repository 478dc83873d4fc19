"""A recording process for the outbox tests: `python recorder_child.py URL KEY
OUTBOX PREFIX COUNT MODE`.

Records COUNT events of kind `test.child.PREFIX` with ids derived from
(PREFIX, i), printing `recorded i` as it goes. MODE `slow` spreads the
records out (to be SIGKILLed mid-run); MODE `flush` records them all,
flushes and prints the Recorder's stats as JSON.
"""

import json
import sys
import time
import uuid

from swarmsite_client import Recorder

NAMESPACE = uuid.UUID("0f7c3a1e-9b52-4d8e-a6c4-3e1d2b5f7a90")


def item_id(prefix: str, index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{prefix}:{index}"))


def main() -> None:
    url, key, outbox, prefix, count, mode = sys.argv[1:7]
    recorder = Recorder(url, key, outbox=outbox, batch_items=200)
    for index in range(int(count)):
        recorder.event(
            f"test.child.{prefix}", id=item_id(prefix, index), payload={"i": index}
        )
        if mode == "slow":
            if index % 50 == 0:
                print(f"recorded {index}", flush=True)
            time.sleep(0.001)
    if mode == "flush":
        ok = recorder.flush(120)
        recorder.close(120)  # the sender may still be sending others' items
        print(json.dumps({"flushed": ok, **recorder.stats()}), flush=True)


if __name__ == "__main__":
    main()
