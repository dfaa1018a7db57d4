// Post leads to the leadsync intake with Node's built-in fetch (Node 18+, no dependencies).
//
//   LEADSYNC_INTAKE_URL=https://leads.example.com LEADSYNC_INTAKE_KEY=lsk_... \
//     node intake.mjs ada@example.com Ada Lovelace
//
// 202: the leads are in Redis. 422: `rejected` names each invalid item (valid ones of a batch
// are queued anyway). 429/503: wait Retry-After and send again with the same Idempotency-Key:
// the intake answers the stored answer and queues nothing twice.
import { randomUUID } from "node:crypto";

export async function sendLeads(baseUrl, apiKey, leads, { attempts = 5 } = {}) {
  const body = JSON.stringify(Array.isArray(leads) ? { leads } : leads);
  const idempotencyKey = randomUUID();
  for (let attempt = 1; ; attempt++) {
    let response;
    try {
      response = await fetch(new URL("/v1/leads", baseUrl), {
        method: "POST",
        headers: {
          Authorization: `Bearer ${apiKey}`,
          "Content-Type": "application/json",
          "Idempotency-Key": idempotencyKey,
        },
        body,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      if (attempt >= attempts) throw error;
      await sleep(Math.min(30_000, 250 * 2 ** attempt));
      continue;
    }
    if ((response.status === 429 || response.status === 503) && attempt < attempts) {
      const wait = Number(response.headers.get("retry-after") ?? "1");
      await sleep(Math.min(60, Number.isFinite(wait) ? wait : 1) * 1000);
      continue;
    }
    return { status: response.status, body: await response.json() };
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Command line: node intake.mjs EMAIL [FIRST_NAME [LAST_NAME]]
if (import.meta.url === `file://${process.argv[1]}`) {
  const [email, firstName, lastName] = process.argv.slice(2);
  const key = process.env.LEADSYNC_INTAKE_KEY;
  if (!email || !key) {
    console.error("usage: LEADSYNC_INTAKE_KEY=lsk_... node intake.mjs EMAIL [FIRST [LAST]]");
    process.exit(2);
  }
  const lead = { email, consent: true, source: "node" };
  if (firstName) lead.first_name = firstName;
  if (lastName) lead.last_name = lastName;
  const url = process.env.LEADSYNC_INTAKE_URL ?? "http://127.0.0.1:8080";
  const answer = await sendLeads(url, key, lead);
  console.log(answer.status, JSON.stringify(answer.body));
  process.exit(answer.status === 202 ? 0 : 1);
}
