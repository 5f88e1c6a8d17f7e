import os, subprocess, time, re
from test_prefetch import status, round_trips, stored

def test_writes(suite, sandbox, mounter):
    m = mounter(opts=sandbox.opts(agent="on"))
    os.mkdir(m.mp / "out")
    os.listdir(m.mp / "out")
    time.sleep(1)
    print(status(suite, m))
    b = round_trips(suite, m)
    subprocess.run(["sh", "-c", 'i=0; while [ $i -lt 100 ]; do printf "%s\\n" "$BLOB" > out/f$i.c; i=$((i+1)); done'], cwd=m.mp, env=dict(os.environ, BLOB="x"*1000), check=True)
    print("write rt", round_trips(suite, m) - b)
    print(status(suite, m))
    b = round_trips(suite, m)
    subprocess.run(["rm", "-r", "out"], cwd=m.mp)
    print("rm rt", round_trips(suite, m) - b)
    print(status(suite, m))
