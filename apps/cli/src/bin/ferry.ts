console.log('ferry: not implemented yet');
