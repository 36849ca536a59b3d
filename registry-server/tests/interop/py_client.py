"""Drives py_eureka_client 0.13.3 against a registry: register, heartbeat, fetch (XML), find the
other client, then deregister when told to on stdin. Usage: py_client.py EUREKA_URL OTHER_APP"""
import asyncio
import sys

from py_eureka_client.eureka_client import EurekaClient
from py_eureka_client import eureka_basic


async def main(url: str, other: str) -> int:
    client = EurekaClient(
        eureka_server=url,
        app_name="py-demo",
        instance_id="127.0.0.1:py-demo:9090",
        instance_host="127.0.0.1",
        instance_ip="127.0.0.1",
        instance_port=9090,
        renewal_interval_in_secs=1,
        duration_in_secs=30,
        vip_adr="py-demo",
        metadata={"lang": "python"},
    )
    await client.start()
    print("REGISTERED", flush=True)
    found = None
    for _ in range(240):
        app = client.applications.get_application(other.upper())
        if app is not None and app.up_instances:
            found = app.up_instances[0]
            break
        await asyncio.sleep(0.25)
    if found is None:
        print(f"NOT FOUND {other}", flush=True)
        await client.stop()
        return 1
    print(f"FOUND {found.app} {found.instanceId} {found.ipAddr}:{found.port.port}", flush=True)
    # The XML resources, called directly.
    vip = await eureka_basic.get_vip(url, "py-demo")
    own = vip.get_application("PY-DEMO").instances[0]
    print(f"VIP {own.instanceId} {own.status} {own.metadata.get('lang')}", flush=True)
    # py_eureka_client 0.13.3's get_instance forgets an await and returns a coroutine.
    inst = await (await eureka_basic.get_instance(url, "127.0.0.1:py-demo:9090"))
    print(f"INSTANCE {inst.instanceId} {inst.port.port}", flush=True)
    inst = await eureka_basic.get_app_instance(url, "JS-DEMO", "js-demo-1")
    app = await eureka_basic.get_application(url, "JS-DEMO")
    print(f"APP {app.name} {len(app.instances)} {inst.hostName}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "oos":
            await client.status_update("OUT_OF_SERVICE")
            print("OOS", flush=True)
        elif line == "restore":
            await client.delete_status_override()
            print("RESTORED", flush=True)
        elif line == "stop":
            break
        else:
            print(f"unexpected command {line!r}", flush=True)
            break
    await client.stop()
    print("STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
