// Placeholder: the native addon build is being written. Exits 0 so `npm ci` works.
console.log('lowbit native: build script not written yet; pure-TypeScript path only');
