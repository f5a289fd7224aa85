export interface ModelSpec {
  /** [height, width, channels] */
  inputShape: [number, number, number];
  numClasses: number;
  seed: number;
}
