console.log('convert-legacy-stream: not implemented yet');
