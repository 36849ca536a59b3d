package palisade.interop;

import java.util.LinkedHashMap;
import java.util.Map;

import org.springframework.boot.CommandLineRunner;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.core.env.Environment;

/**
 * A Spring Boot config client: imports its configuration from the server named by
 * spring.config.import, prints the properties listed in --palisade.keys as one JSON line, exits.
 */
@SpringBootApplication
public class ConfigClientApp implements CommandLineRunner {
    private final Environment env;

    public ConfigClientApp(Environment env) {
        this.env = env;
    }

    public static void main(String[] args) {
        SpringApplication.run(ConfigClientApp.class, args);
    }

    @Override
    public void run(String... args) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String key : env.getProperty("palisade.keys", "").split(",")) {
            if (!key.isBlank()) {
                out.put(key, env.getProperty(key));
            }
        }
        StringBuilder json = new StringBuilder("PALISADE-RESULT {");
        boolean first = true;
        for (Map.Entry<String, String> e : out.entrySet()) {
            if (!first) {
                json.append(',');
            }
            first = false;
            json.append('"').append(escape(e.getKey())).append("\":");
            json.append(e.getValue() == null ? "null" : '"' + escape(e.getValue()) + '"');
        }
        System.out.println(json.append('}'));
    }

    private static String escape(String s) {
        return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
    }
}
