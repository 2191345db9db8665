export const CODEC_VERSION = 1;
