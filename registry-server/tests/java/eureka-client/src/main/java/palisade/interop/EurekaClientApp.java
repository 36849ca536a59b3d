package palisade.interop;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.List;

import org.springframework.boot.CommandLineRunner;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.cloud.client.ServiceInstance;
import org.springframework.cloud.client.discovery.DiscoveryClient;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.annotation.Bean;

/**
 * A stock Spring Cloud Netflix Eureka client. It registers itself, then looks for the application
 * named by --palisade.find, prints FOUND when it sees it, and shuts down (deregistering) when a
 * "stop" line arrives on stdin.
 */
@SpringBootApplication
public class EurekaClientApp {
    public static void main(String[] args) {
        SpringApplication.run(EurekaClientApp.class, args);
    }

    @Bean
    CommandLineRunner findOther(DiscoveryClient discovery, ConfigurableApplicationContext ctx,
                                org.springframework.core.env.Environment env) {
        return args -> {
            String other = env.getProperty("palisade.find", "RUST-DEMO");
            System.out.println("STARTED");
            ServiceInstance found = null;
            for (int i = 0; i < 600 && found == null; i++) {
                List<ServiceInstance> instances = discovery.getInstances(other);
                if (!instances.isEmpty()) {
                    found = instances.get(0);
                } else {
                    Thread.sleep(100);
                }
            }
            if (found == null) {
                System.out.println("NOT FOUND " + other);
                System.exit(SpringApplication.exit(ctx, () -> 1));
            }
            System.out.println("FOUND " + found.getServiceId() + " " + found.getInstanceId() + " "
                + found.getHost() + ":" + found.getPort() + " " + found.getMetadata().get("lang"));
            System.out.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
            String line = in.readLine();
            // "find APP": wait until the client's cache (refreshed by delta fetches) shows APP.
            while (line != null && line.startsWith("find ")) {
                String app = line.substring(5).trim();
                ServiceInstance late = null;
                for (int i = 0; i < 600 && late == null; i++) {
                    List<ServiceInstance> instances = discovery.getInstances(app);
                    if (!instances.isEmpty()) {
                        late = instances.get(0);
                    } else {
                        Thread.sleep(100);
                    }
                }
                System.out.println(late == null ? "NOT FOUND " + app : "FOUND " + late.getServiceId() + " "
                    + late.getInstanceId() + " " + late.getHost() + ":" + late.getPort() + " "
                    + late.getMetadata().get("lang"));
                System.out.flush();
                line = in.readLine();
            }
            System.out.println("STOPPING " + line);
            int code = SpringApplication.exit(ctx, () -> 0);
            System.out.println("STOPPED");
            System.out.flush();
            System.exit(code);
        };
    }
}
