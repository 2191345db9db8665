console.log('verify-stream-v2: not implemented yet');
