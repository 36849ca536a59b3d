package palisade.jmh;

import io.github.resilience4j.bulkhead.Bulkhead;
import io.github.resilience4j.bulkhead.BulkheadConfig;
import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import io.github.resilience4j.ratelimiter.RateLimiter;
import io.github.resilience4j.ratelimiter.RateLimiterConfig;
import io.github.resilience4j.retry.Retry;
import io.github.resilience4j.retry.RetryConfig;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * One call through each Resilience4j primitive on its happy path, with the payload of the Rust
 * benches: return the argument. The decorated suppliers are built once, as Resilience4j's own
 * JMH benchmarks do. Single thread, average time per call.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class Resilience4jBenchmark {
    private long x = 7;
    private Supplier<Long> direct;
    private Supplier<Long> circuitBreaker;
    private Supplier<Long> bulkhead;
    private Supplier<Long> rateLimiter;
    private Supplier<Long> retry;

    @Setup
    public void setup() {
        direct = () -> x;
        CircuitBreaker cb = CircuitBreaker.of("bench", CircuitBreakerConfig.custom()
            .slidingWindowSize(100)
            .minimumNumberOfCalls(10)
            .failureRateThreshold(50)
            .waitDurationInOpenState(Duration.ofHours(1))
            .build());
        circuitBreaker = CircuitBreaker.decorateSupplier(cb, direct);
        Bulkhead bh = Bulkhead.of("bench", BulkheadConfig.custom()
            .maxConcurrentCalls(1000)
            .maxWaitDuration(Duration.ZERO)
            .build());
        bulkhead = Bulkhead.decorateSupplier(bh, direct);
        // Never hit: a billion calls per second, like the Rust bench.
        RateLimiter rl = RateLimiter.of("bench", RateLimiterConfig.custom()
            .limitForPeriod(1_000_000_000)
            .limitRefreshPeriod(Duration.ofSeconds(1))
            .timeoutDuration(Duration.ZERO)
            .build());
        rateLimiter = RateLimiter.decorateSupplier(rl, direct);
        Retry r = Retry.of("bench", RetryConfig.custom()
            .maxAttempts(3)
            .waitDuration(Duration.ofMillis(25))
            .build());
        retry = Retry.decorateSupplier(r, direct);
    }

    @Benchmark
    public Long direct() {
        return direct.get();
    }

    @Benchmark
    public Long circuitBreaker() {
        return circuitBreaker.get();
    }

    @Benchmark
    public Long bulkhead() {
        return bulkhead.get();
    }

    @Benchmark
    public Long rateLimiter() {
        return rateLimiter.get();
    }

    @Benchmark
    public Long retry() {
        return retry.get();
    }
}
