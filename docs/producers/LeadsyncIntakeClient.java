// A complete leadsync intake client for Java 17+, using only java.net.http (no dependencies).
//
//   javac LeadsyncIntakeClient.java
//   LEADSYNC_INTAKE_URL=https://leads.example.com LEADSYNC_INTAKE_KEY=lsk_... \
//     java LeadsyncIntakeClient ada@example.com Ada Lovelace
//
// Copy the class into your application: `send(Map)` posts one lead, `sendBatch(List)` up to
// 500. The answer is 202 only once the lead is in Redis; 422 names each invalid field; 429 and
// 503 carry Retry-After and are retried here. Retrying is always safe: the same lead (same
// content or same lead_id) and the same Idempotency-Key are queued once and answered the same.

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

public final class LeadsyncIntakeClient {

    /** The intake's answer: HTTP status and the JSON body as text. */
    public record Answer(int status, String body) {
        public boolean accepted() { return status == 202; }
    }

    /** Thrown when the intake refused for good (4xx other than 429) or kept failing. */
    public static final class IntakeException extends IOException {
        private static final long serialVersionUID = 1L;
        public final int status;
        public IntakeException(int status, String message) {
            super(message);
            this.status = status;
        }
    }

    private final HttpClient http;
    private final URI endpoint;
    private final String apiKey;
    private final int maxAttempts;

    public LeadsyncIntakeClient(String baseUrl, String apiKey) {
        this(baseUrl, apiKey, 5);
    }

    public LeadsyncIntakeClient(String baseUrl, String apiKey, int maxAttempts) {
        this.http = HttpClient.newBuilder()
                .connectTimeout(Duration.ofSeconds(5))
                .version(HttpClient.Version.HTTP_1_1)
                .build();
        this.endpoint = URI.create(baseUrl.replaceAll("/+$", "") + "/v1/leads");
        this.apiKey = apiKey;
        this.maxAttempts = maxAttempts;
    }

    /** Post one lead (keys as in the lead schema: email, first_name, ..., lead_id). */
    public Answer send(Map<String, ?> lead) throws IOException, InterruptedException {
        return post(Json.write(lead), UUID.randomUUID().toString());
    }

    /** Post up to 500 leads at once; valid ones are queued even when others are refused. */
    public Answer sendBatch(List<? extends Map<String, ?>> leads)
            throws IOException, InterruptedException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("leads", leads);
        return post(Json.write(body), UUID.randomUUID().toString());
    }

    private Answer post(String json, String idempotencyKey)
            throws IOException, InterruptedException {
        HttpRequest request = HttpRequest.newBuilder(endpoint)
                .timeout(Duration.ofSeconds(30))
                .header("Authorization", "Bearer " + apiKey)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", idempotencyKey)  // the same for every retry
                .POST(HttpRequest.BodyPublishers.ofString(json))
                .build();
        IOException last = null;
        for (int attempt = 1; attempt <= maxAttempts; attempt++) {
            HttpResponse<String> response;
            try {
                response = http.send(request, HttpResponse.BodyHandlers.ofString());
            } catch (IOException e) {  // connection refused or reset: retry, it is safe
                last = e;
                Thread.sleep(backoffMillis(attempt, null));
                continue;
            }
            int status = response.statusCode();
            if (status == 202 || status == 422) {
                return new Answer(status, response.body());
            }
            if (status == 429 || status == 503) {
                last = new IntakeException(status, "intake busy: HTTP " + status);
                String wait = response.headers().firstValue("Retry-After").orElse(null);
                Thread.sleep(backoffMillis(attempt, wait));
                continue;
            }
            throw new IntakeException(status, "intake refused: HTTP " + status + " " + response.body());
        }
        throw last != null ? last : new IOException("no attempt made");
    }

    private static long backoffMillis(int attempt, String retryAfter) {
        if (retryAfter != null) {
            try {
                return Math.min(60_000L, Long.parseLong(retryAfter.trim()) * 1000L);
            } catch (NumberFormatException ignored) {
                // an HTTP date: fall through to exponential backoff
            }
        }
        return Math.min(30_000L, 250L << Math.min(attempt, 7));
    }

    /** Just enough JSON writing for maps, lists, strings, numbers and booleans. */
    static final class Json {
        static String write(Object value) {
            StringBuilder out = new StringBuilder();
            write(value, out);
            return out.toString();
        }

        private static void write(Object value, StringBuilder out) {
            if (value == null) {
                out.append("null");
            } else if (value instanceof String s) {
                out.append('"');
                for (char c : s.toCharArray()) {
                    switch (c) {
                        case '"' -> out.append("\\\"");
                        case '\\' -> out.append("\\\\");
                        case '\n' -> out.append("\\n");
                        case '\r' -> out.append("\\r");
                        case '\t' -> out.append("\\t");
                        default -> {
                            if (c < 0x20) {
                                out.append(String.format("\\u%04x", (int) c));
                            } else {
                                out.append(c);
                            }
                        }
                    }
                }
                out.append('"');
            } else if (value instanceof Number || value instanceof Boolean) {
                out.append(value);
            } else if (value instanceof Map<?, ?> map) {
                out.append('{');
                boolean first = true;
                for (Map.Entry<?, ?> entry : map.entrySet()) {
                    if (!first) {
                        out.append(',');
                    }
                    first = false;
                    write(String.valueOf(entry.getKey()), out);
                    out.append(':');
                    write(entry.getValue(), out);
                }
                out.append('}');
            } else if (value instanceof Iterable<?> items) {
                out.append('[');
                boolean first = true;
                for (Object item : items) {
                    if (!first) {
                        out.append(',');
                    }
                    first = false;
                    write(item, out);
                }
                out.append(']');
            } else {
                throw new IllegalArgumentException("not JSON: " + value.getClass().getName());
            }
        }
    }

    /** Command line: email [first_name [last_name]]; prints the intake's answer. */
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: java LeadsyncIntakeClient EMAIL [FIRST_NAME [LAST_NAME]]");
            System.exit(2);
        }
        String url = System.getenv().getOrDefault("LEADSYNC_INTAKE_URL", "http://127.0.0.1:8080");
        String key = System.getenv("LEADSYNC_INTAKE_KEY");
        if (key == null || key.isBlank()) {
            System.err.println("set LEADSYNC_INTAKE_KEY (leadsync intake keys create NAME)");
            System.exit(2);
        }
        Map<String, Object> lead = new LinkedHashMap<>();
        lead.put("email", args[0]);
        if (args.length > 1) {
            lead.put("first_name", args[1]);
        }
        if (args.length > 2) {
            lead.put("last_name", args[2]);
        }
        lead.put("consent", true);
        lead.put("source", "java");
        Answer answer = new LeadsyncIntakeClient(url, key).send(lead);
        System.out.println(answer.status() + " " + answer.body());
        System.exit(answer.accepted() ? 0 : 1);
    }
}
