import { defineConfig, devices } from '@playwright/test';

// Playwright starts two servers, each on a free port (port 0), and learns the ports from
// the line each prints on stdout (webServer.wait: a named group becomes an environment
// variable, upper-cased, that the tests read):
//
// - replay itself: `replay serve --port 0` prints, once it listens,
//   "replay 0.1.0: playing scenarios from ... on http://127.0.0.1:PORT (dashboard: ...)".
//   REPLAY (default 'uv run replay') is the command that runs replay.
// - the static chat page in public/, with Python's own http.server (no extra dependency;
//   replay does not serve other pages). -u: its line is not kept in a buffer.
//
// Free ports mean no clash with a replay already running on 8123, or with other runs of
// these tests on the same machine.
const replay = process.env.REPLAY ?? 'uv run replay';

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  forbidOnly: !!process.env.CI,
  reporter: 'list',
  webServer: [
    {
      name: 'replay',
      command: `${replay} serve --port 0 --scenarios ../../scenarios`,
      wait: { stdout: /playing scenarios from .* on http:\/\/127\.0\.0\.1:(?<replay_port>\d+) / },
      timeout: 60_000,
      reuseExistingServer: false,
      stdout: 'pipe',
      stderr: 'pipe',
      // SIGTERM lets replay close its WebSockets and end its runs; then SIGKILL.
      gracefulShutdown: { signal: 'SIGTERM', timeout: 5_000 },
    },
    {
      name: 'page',
      command: 'python3 -u -m http.server 0 --bind 127.0.0.1 --directory public',
      wait: { stdout: /Serving HTTP on 127\.0\.0\.1 port (?<page_port>\d+) / },
      timeout: 30_000,
      reuseExistingServer: false,
      gracefulShutdown: { signal: 'SIGTERM', timeout: 2_000 },
    },
  ],
  use: {
    trace: 'retain-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        // Debian's Chromium (CHROMIUM to use another); Playwright's own download is not needed.
        launchOptions: {
          executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
          args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
            '--no-first-run',
          ],
        },
      },
    },
  ],
});
