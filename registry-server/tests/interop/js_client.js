// Drives eureka-js-client 4.5.0 against a registry: register, heartbeat, fetch (JSON), find the
// other client, then deregister when told to on stdin. Usage: node js_client.js PORT OTHER_APP
const { Eureka } = require('eureka-js-client');

const [port, other] = process.argv.slice(2);
const client = new Eureka({
  instance: {
    app: 'js-demo',
    instanceId: 'js-demo-1',
    hostName: 'localhost',
    ipAddr: '127.0.0.1',
    port: { $: 7070, '@enabled': true },
    vipAddress: 'js-demo',
    statusPageUrl: 'http://localhost:7070/info',
    dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
  },
  eureka: {
    host: '127.0.0.1',
    port: Number(port),
    servicePath: '/eureka/apps/',
    heartbeatInterval: 1000,
    registryFetchInterval: 500,
    shouldUseDelta: true,
    maxRetries: 3,
  },
  logger: { debug() {}, info() {}, warn: console.error, error: console.error },
});

function fail(msg) {
  console.log(msg);
  client.stop(() => process.exit(1));
}

client.start((err) => {
  if (err) return fail(`START FAILED ${err}`);
  console.log('REGISTERED');
  let tries = 0;
  const poll = setInterval(() => {
    const found = client.getInstancesByAppId(other.toUpperCase());
    if (found.length > 0) {
      clearInterval(poll);
      const i = found[0];
      console.log(`FOUND ${i.app} ${i.instanceId} ${i.ipAddr}:${i.port.$}`);
      const byVip = client.getInstancesByVipAddress(other.toLowerCase());
      console.log(`VIP ${byVip.length}`);
      process.stdin.once('data', (line) => {
        if (String(line).trim() !== 'stop') console.log(`unexpected command ${line}`);
        client.stop((stopErr) => {
          console.log(stopErr ? `STOP FAILED ${stopErr}` : 'STOPPED');
          process.exit(stopErr ? 1 : 0);
        });
      });
    } else if (++tries > 240) {
      clearInterval(poll);
      fail(`NOT FOUND ${other}`);
    }
  }, 250);
});
