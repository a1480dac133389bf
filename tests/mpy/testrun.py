"""One test function under MicroPython, as runner.py and web_vm.py run theirs: collect
first, run, print "PASS name" (with free=True also the heap free after it) or "FAIL name"
and the traceback. Returns True when it passed."""

import gc
import sys


def run(name, test, free=False):
    gc.collect()
    try:
        test()
    except Exception as e:
        print("FAIL", name)
        sys.print_exception(e)
        return False
    if free:
        print("PASS", name, "free", gc.mem_free())
    else:
        print("PASS", name)
    return True
