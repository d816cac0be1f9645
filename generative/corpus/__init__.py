"""The Foley corpus: captioned, labelled, split clips built offline from synthesis, speech,
General MIDI and packaged recordings. Entry point: `generative.corpus.build.build_corpus`."""
