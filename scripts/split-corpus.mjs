// Regenerates data/jargon.train.txt and data/jargon.heldout.txt from the Jargon File 4.4.7 (public domain):
// the first ~90% (cut at the next blank line) trains, the rest is held out for perplexity.
//   node scripts/split-corpus.mjs ../shared/data/jargon.txt
import { readFileSync, writeFileSync } from 'node:fs';
const src = process.argv[2] ?? '../shared/data/jargon.txt';
const t = readFileSync(src, 'utf8');
const cut = t.indexOf('\n\n', Math.floor(t.length * 0.9)) + 2;
writeFileSync('data/jargon.train.txt', t.slice(0, cut));
writeFileSync('data/jargon.heldout.txt', t.slice(cut));
console.log(`train ${cut} chars, heldout ${t.length - cut} chars`);
