import { test, expect, type APIRequestContext } from '@playwright/test';

// Set by playwright.config.ts's webServer.wait, from the lines the servers print.
const replay = `http://127.0.0.1:${process.env.REPLAY_PORT}`;
const pageUrl = `http://127.0.0.1:${process.env.PAGE_PORT}`;

/** The endpoints `client` is connected to, as replay's GET /clients lists them. */
async function endpointsOf(request: APIRequestContext, client: string): Promise<string[]> {
  const answer = await request.get(`${replay}/clients`);
  expect(answer.ok()).toBeTruthy();
  const { clients } = await answer.json();
  return clients
    .filter((c: { client_id: string }) => c.client_id === client)
    .map((c: { endpoint: string }) => c.endpoint)
    .sort();
}

test('the chat scenario asks, takes the answer and streams a reply that quotes it', async ({
  page,
  request,
}) => {
  expect(process.env.REPLAY_PORT, 'replay printed its port').toBeTruthy();
  const client = `pw-${Date.now()}`;
  await page.goto(`${pageUrl}/?replay=${encodeURIComponent(replay)}&client=${client}`);
  await expect(page.getByTestId('status')).toHaveText('connected');
  // Both sockets are registered with replay before anything is sent to this client.
  await expect.poll(() => endpointsOf(request, client)).toEqual(['/ws', '/ws/stream']);

  // Playwright's request API sends no Origin header: replay allows it.
  const trigger = await request.post(`${replay}/trigger/chat?client=${client}&wait=false`);
  expect(trigger.status()).toBe(202);
  const { url: run } = await trigger.json(); // /runs/ID: the run's state and counts

  await expect(page.getByTestId('prompt')).toHaveText('What should I do next?');
  // Answer at once, as a test does: scenarios/chat.yaml pauses 0.3 s before its
  // 'wait: CHAT_INPUT', and the run's mailbox keeps an answer that comes before the wait.
  await page.getByLabel('Your answer').fill('write the tests first');
  await page.getByRole('button', { name: 'Send' }).click();

  // scenarios/chat.yaml streams this, quoting the answer, then closes the stream.
  const reply = page.getByTestId('reply');
  await expect(reply).toHaveText(
    'You asked: "write the tests first". Here is my plan: first I read the code, ' +
      'then I write the tests, and then I change the code until they pass.',
  );
  await expect(reply).toHaveAttribute('data-state', 'closed');
  await expect(page.getByTestId('agent-state')).toHaveText('done');
  await expect(page.getByTestId('events')).toContainText('EVENT: ');
  // And replay agrees: the run took the answer and played to its end.
  await expect
    .poll(async () => (await (await request.get(`${replay}${run}`)).json()).state)
    .toBe('finished');
});
