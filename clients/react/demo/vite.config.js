// The demo page: `npm run dev` (http://localhost:5173) or `npm run build` (-> clients/react/dist).
// VITE_RENDER_API_URL (environment or demo/.env.local) is the appliance the page calls, directly: no dev-server
// proxy, so the appliance's cors_origins must list the page's origin.
import { fileURLToPath } from 'node:url';

import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  build: {
    outDir: fileURLToPath(new URL('../dist', import.meta.url)),
    emptyOutDir: true,
  },
});
