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
import org.openjdk.jmh.annotations.*;

/**
 * Per-call cost of each Resilience4j primitive around the same trivial payload as the Rust
 * criterion benches (return the argument). The overhead is each row minus {@code direct}.
 * Configuration mirrors benches/benches/breaker.rs: count window 100, minimum 10 calls, 50%.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class Resilience4jBench {
    private long x = 7;
    private Supplier<Long> payload;
    private Supplier<Long> breaker;
    private Supplier<Long> breakerOpen;
    private Supplier<Long> bulkhead;
    private Supplier<Long> rateLimiter;
    private Supplier<Long> retry;

    @Setup
    public void setup() {
        payload = () -> x;
        CircuitBreakerConfig cb = CircuitBreakerConfig.custom()
                .slidingWindowType(CircuitBreakerConfig.SlidingWindowType.COUNT_BASED)
                .slidingWindowSize(100)
                .minimumNumberOfCalls(10)
                .failureRateThreshold(50)
                .waitDurationInOpenState(Duration.ofHours(1))
                .build();
        breaker = CircuitBreaker.decorateSupplier(CircuitBreaker.of("bench", cb), payload);
        CircuitBreaker open = CircuitBreaker.of("open", cb);
        open.transitionToOpenState();
        Supplier<Long> rejected = CircuitBreaker.decorateSupplier(open, payload);
        breakerOpen = () -> {
            try {
                return rejected.get();
            } catch (io.github.resilience4j.circuitbreaker.CallNotPermittedException e) {
                return -1L;
            }
        };
        bulkhead = Bulkhead.decorateSupplier(
                Bulkhead.of("bench", BulkheadConfig.custom().maxConcurrentCalls(1000).maxWaitDuration(Duration.ZERO).build()),
                payload);
        rateLimiter = RateLimiter.decorateSupplier(
                RateLimiter.of("bench", RateLimiterConfig.custom()
                        .limitForPeriod(Integer.MAX_VALUE)
                        .limitRefreshPeriod(Duration.ofNanos(1))
                        .timeoutDuration(Duration.ZERO)
                        .build()),
                payload);
        retry = Retry.decorateSupplier(Retry.of("bench", RetryConfig.custom().maxAttempts(3).build()), payload);
    }

    @Benchmark public long direct() { return payload.get(); }
    @Benchmark public long circuitBreaker() { return breaker.get(); }
    @Benchmark public long circuitBreakerOpen() { return breakerOpen.get(); }
    @Benchmark public long bulkhead() { return bulkhead.get(); }
    @Benchmark public long rateLimiter() { return rateLimiter.get(); }
    @Benchmark public long retry() { return retry.get(); }
}
