// The API browser: Swagger UI (vendored, no CDN) over /openapi.json. Signed in,
// "Try it out" requests carry the in-memory access token.

import { session, token } from './api.js';
import { start } from './ui.js';

start(async () => {
  await session().catch(() => null);
  // The bundle is a classic deferred script; modules run after it.
  window.SwaggerUIBundle({
    url: '/openapi.json',
    dom_id: '#api',
    deepLinking: true,
    tryItOutEnabled: false,
    requestInterceptor: (request) => {
      const bearer = token();
      if (bearer && !request.headers.Authorization) request.headers.Authorization = `Bearer ${bearer}`;
      return request;
    },
  });
});
