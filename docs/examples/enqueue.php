<?php
// Enqueue a job in Switchboard from PHP: php-curl only, no Composer, PHP 7.4 or later.
//
//   SWITCHBOARD_URL=http://127.0.0.1:8080 SWITCHBOARD_API_KEY=sbk_... php enqueue.php
//
// It enqueues a `noop` job, waits until it has run, then sends a job Switchboard refuses, and
// prints one line per step:
//
//   accepted <id>
//   completed <id>
//   refused 422 args.to
//
// Anything unexpected ends it with one line on stderr and exit status 1.
// Copy switchboard_request() into the app; the rest shows how to read its answers.

declare(strict_types=1);

/**
 * One request to Switchboard's API at $SWITCHBOARD_URL with the key $SWITCHBOARD_API_KEY.
 *
 * $body (an array; use `new stdClass()` for an empty JSON object) is sent as JSON. A 429 or
 * 503 is retried once after its Retry-After, with the same headers (so the same
 * Idempotency-Key): a second 429/503 is returned to the caller.
 *
 * Returns [HTTP status, the decoded JSON answer (an array; null when the body is not JSON)].
 * Throws RuntimeException when Switchboard cannot be reached at all.
 */
function switchboard_request(string $method, string $path, $body = null, array $headers = []): array
{
    $base = rtrim((string) getenv('SWITCHBOARD_URL'), '/');
    $lines = [
        'Authorization: Bearer ' . getenv('SWITCHBOARD_API_KEY'),
        'Accept: application/json',
    ];
    foreach ($headers as $name => $value) {
        $lines[] = $name . ': ' . $value;
    }
    $payload = null;
    if ($body !== null) {
        $payload = json_encode($body, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        $lines[] = 'Content-Type: application/json';
    }
    for ($attempt = 1; ; $attempt++) {
        $retryAfter = null;
        $curl = curl_init($base . $path);
        curl_setopt_array($curl, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $lines,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_CONNECTTIMEOUT => 5,
            CURLOPT_TIMEOUT => 15,
            CURLOPT_HEADERFUNCTION => function ($curl, string $line) use (&$retryAfter): int {
                if (stripos($line, 'Retry-After:') === 0) {
                    $retryAfter = trim(substr($line, strlen('Retry-After:')));
                }
                return strlen($line);
            },
        ]);
        if ($payload !== null) {
            curl_setopt($curl, CURLOPT_POSTFIELDS, $payload);
        }
        $text = curl_exec($curl);
        if ($text === false) {
            throw new RuntimeException("$method $path: " . curl_error($curl));
        }
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        if (($status === 429 || $status === 503) && $attempt === 1) {
            // Seconds (what Switchboard sends) or an HTTP date; at least 1 s, at most 60 s.
            $wait = preg_match('/^[0-9]+$/', (string) $retryAfter) === 1
                ? (int) $retryAfter
                : (int) strtotime((string) $retryAfter) - time();
            sleep(max(1, min(60, $wait)));
            continue;
        }
        $decoded = json_decode((string) $text, true);
        return [$status, is_array($decoded) ? $decoded : null];
    }
}

/** Stop with one line on stderr and exit status 1. */
function fail(string $message): void
{
    fwrite(STDERR, 'enqueue.php: ' . $message . PHP_EOL);
    exit(1);
}

/** "HTTP 401: unknown API key (field x)" for an answer nobody expected. */
function answer(int $status, ?array $body): string
{
    $error = $body['error'] ?? 'no JSON error in the answer';
    $field = isset($body['field']) ? ' (field ' . $body['field'] . ')' : '';
    return 'HTTP ' . $status . ': ' . $error . $field;
}

if ((string) getenv('SWITCHBOARD_URL') === '' || (string) getenv('SWITCHBOARD_API_KEY') === '') {
    fail('set SWITCHBOARD_URL (e.g. http://127.0.0.1:8080) and SWITCHBOARD_API_KEY (sbk_...)');
}
if (!function_exists('curl_init')) {
    fail('this PHP has no curl extension: install php-curl');
}

try {
    // (a) Enqueue. The Idempotency-Key makes a retry of this very request safe: sent again
    // (after a timeout, a 429 or a 503) it enqueues nothing and answers the same id.
    $job = ['kind' => 'noop', 'args' => new stdClass()];
    $idempotency = ['Idempotency-Key' => 'enqueue-example-' . bin2hex(random_bytes(8))];
    [$status, $accepted] = switchboard_request('POST', '/api/v1/jobs', $job, $idempotency);
    if ($status !== 202 || !isset($accepted['id'])) {
        fail('enqueue: ' . answer($status, $accepted));
    }
    $id = $accepted['id'];
    echo "accepted $id\n";

    [$status, $again] = switchboard_request('POST', '/api/v1/jobs', $job, $idempotency);
    if ($status !== 202 || ($again['id'] ?? null) !== $id || ($again['duplicate'] ?? null) !== true) {
        fail('the same Idempotency-Key again: ' . answer($status, $again));
    }

    // (b) Wait until it has run: pending, delayed or running mean "not yet".
    $deadline = microtime(true) + 20;
    $pause = 0.1;
    while (true) {
        [$status, $view] = switchboard_request('GET', '/api/v1/jobs/' . rawurlencode($id));
        if ($status !== 200) {
            fail("reading job $id: " . answer($status, $view));
        }
        $state = $view['state'] ?? '?';
        if ($state === 'completed') {
            break;
        }
        if (in_array($state, ['dead', 'expired', 'cancelled'], true)) {
            fail("job $id is $state: " . ($view['error'] ?? 'no error recorded'));
        }
        if (microtime(true) > $deadline) {
            fail("job $id is still $state after 20 s");
        }
        usleep((int) ($pause * 1e6));
        $pause = min(2.0, $pause * 2);
    }
    echo "completed $id\n";

    // (c) A job Switchboard refuses: notify.email's `to` is a string, not a number. A 422
    // names the field at fault; fix the request, do not retry it as it is.
    $bad = [
        'kind' => 'notify.email',
        'args' => ['key' => 'example:welcome:1', 'to' => 42],
    ];
    [$status, $refusal] = switchboard_request('POST', '/api/v1/jobs', $bad);
    if ($status !== 422 || !isset($refusal['field'])) {
        fail('a job with a wrong argument: ' . answer($status, $refusal));
    }
    echo 'refused ' . $status . ' ' . $refusal['field'] . "\n";
} catch (Throwable $e) {
    fail($e->getMessage());
}
